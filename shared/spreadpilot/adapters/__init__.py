"""Thin clients at the edge: connections to PostgreSQL, MongoDB, Redis and Pub/Sub.

Each module here only knows how to *reach* a service (parse a DSN, set short
timeouts, create a topic on the emulator). What is stored where, and the rules
around it (idempotency, compare-and-set), lives in ``spreadpilot.storage``,
which builds on these clients. The domain never imports either package.
"""
