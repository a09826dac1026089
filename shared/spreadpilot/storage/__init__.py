"""Repositories: what SpreadPilot stores, and the rules that keep it correct.

``spreadpilot.adapters`` holds the thin clients (connections, timeouts); this
package holds the repositories built on them, one per collection or table
family, each with the idempotency or compare-and-set rule its data needs:

- ``storage.fills`` / ``storage.pnl``: PostgreSQL ``fills`` and the P&L tables.
- ``storage.followers``, ``storage.executions``, ``storage.signals``,
  ``storage.alerts``: MongoDB collections (kept to what FerretDB also serves:
  CRUD, unique indexes, ``find_one_and_update``, upserts; no transactions).
- ``storage.migrate``: the versioned SQL migration runner.
"""
