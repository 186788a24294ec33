"""Example configuration files, installed as package data."""
