"""The store: queue and metadata in SQLite, spool and blobs as files, migrations, the lock."""
