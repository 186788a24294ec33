"""The commented default routing policy, installed as package data (only *.toml is read)."""
