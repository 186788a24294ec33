"""The SQLite back-end's parts, one module per concern. `Store` (gateway/storage/store.py)
inherits them, so every part shares its connection, lock and clock."""
