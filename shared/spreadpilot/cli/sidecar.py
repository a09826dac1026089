"""``spreadpilot sidecar``: run the broker sidecar under uvicorn."""

from __future__ import annotations

import click

from spreadpilot.cli._root import main


@main.command("sidecar")
@click.option("--host", default=None, help="Interface to bind (default SIDECAR_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default SIDECAR_PORT or 8001).")
@click.option("--log-level", default="warning", show_default=True, help="uvicorn's own log level.")
def sidecar(host: str | None, port: int | None, log_level: str) -> None:
    """Start the broker sidecar (per-follower IB sessions, ladder, kill switch)."""
    import uvicorn

    from sidecar.app import SidecarDeps, create_app
    from spreadpilot.config import get_settings

    settings = get_settings()
    # resolves SECRETS_BACKEND (env, gcp, vault) once
    app = create_app(settings, SidecarDeps(settle_heap=True))
    uvicorn.run(
        app,
        host=host or settings.sidecar_host,
        port=port or settings.sidecar_port,
        log_level=log_level,
        access_log=False,
    )
