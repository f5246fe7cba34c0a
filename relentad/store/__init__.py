"""SQLite store: connections, the single writer thread, migrations and the data each table holds."""
