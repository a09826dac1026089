"""Versioned PostgreSQL schema, shipped inside the library.

Files are named ``NNNN_description.sql`` and applied in version order, each
once, by ``spreadpilot.storage.migrate`` (``spreadpilot db migrate``). A file
that has been applied anywhere is never edited: the runner stores a checksum
and refuses to continue if an applied file changed. Change the schema with a
new file instead. Files must not contain BEGIN/COMMIT: the runner wraps each
file and its bookkeeping row in one transaction.
"""
