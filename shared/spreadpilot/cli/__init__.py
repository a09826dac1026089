"""The ``spreadpilot`` command line.

Each command group is a module that decorates a group onto
``spreadpilot.cli._root.main`` (``@main.group()``); importing the module here
is all it takes to register it. Keep module top levels light (import heavy
libraries inside the commands) so ``spreadpilot --help`` and quick commands
stay fast.
"""

# Command groups: one import line each (order is irrelevant).
from spreadpilot.cli import (
    db,  # noqa: F401
    demo,  # noqa: F401
    followers,  # noqa: F401
    jobs,  # noqa: F401
    local,  # noqa: F401
    services,  # noqa: F401
    sidecar,  # noqa: F401
    signal,  # noqa: F401
)
from spreadpilot.cli._root import main

__all__ = ["main"]
