"""Pickup: encrypt and store a message, notify the recipient, expire it at retention."""
