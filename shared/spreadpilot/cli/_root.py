"""The top-level ``spreadpilot`` command group.

It lives in its own module so that command modules can attach themselves to it
(``@main.group()``) without importing the package ``__init__``, which imports
them: adding a command group is then one import line in ``__init__``.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """SpreadPilot: copy a QQQ 0DTE spread strategy onto many IBKR accounts."""
