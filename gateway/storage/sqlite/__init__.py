"""The SQLite back-end's parts, one module per concern: queue (with the spool files of
spool.py), pickups, portal, knowledge, audit. `Store` (gateway/storage/store.py) inherits
them, so every part shares its connection, lock, clock and owner."""
