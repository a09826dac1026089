"""One functions-framework server hosting every target, each under ``/<target>/``.

Cloud Functions runs each function as its own service. Locally, one
``functions-framework --target X`` process per target costs a Python start-up
each (Flask, gRPC, the Google clients, our code): seven of them in parallel
take over 20 s on a 2-core machine, which the demo's three minutes cannot
afford. This host builds each target with ``functions_framework.create_app``
(the very function the ``functions-framework`` command uses, so requests go
through the same decorators, CloudEvent parsing and error handling) and
mounts them side by side, served by functions-framework's own gunicorn
server. ``GET /`` lists the targets, which doubles as the readiness probe.

Run: ``python -m spreadpilot.local.functions_host --source functions/main.py
--port 8100 --target poll_signals --target tv_monitor ...``
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence


def build_app(source: str, targets: Sequence[str]) -> object:
    """A Flask app whose ``/<target>/`` prefixes dispatch to each target's app."""
    import flask
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    mounted = {
        f"/{target}": functions_framework.create_app(target, source)  # type: ignore[no-untyped-call]
        for target in targets
    }
    root = flask.Flask("functions-host")

    @root.get("/")
    def index() -> dict[str, object]:
        return {"targets": sorted(targets)}

    root.wsgi_app = DispatcherMiddleware(root.wsgi_app, mounted)  # type: ignore[method-assign]
    return root


# Zero-argument factories of ``functions.runtime`` that open connections. A
# name the runtime no longer has is skipped: warming is an optimisation only.
WARM_FACTORIES = (
    "redis_client",
    "mongo_db",
    "postgres",
    "pubsub",
    "alert_publisher",
    "followers",
    "signal_poller",
    "signal_dispatcher",
    "alert_fanout",
    "tv_monitor",
    "daily_rollup",
)


def warm_up() -> list[str]:
    """Open the functions' connections now rather than in the first invocation.

    Cloud Functions hides a cold start behind real time; on the demo's scaled
    clock a two-second cold start of ``poll_signals`` at 09:27 would cost
    several simulated minutes of the signal window. Nothing is invoked: only
    the per-instance clients are built, exactly as the first request would.
    Returns the factories that failed (logged, never fatal).
    """
    import importlib
    import logging

    failed: list[str] = []
    try:
        runtime = importlib.import_module("functions.runtime")
    except Exception:
        logging.getLogger(__name__).warning("functions.runtime not importable; no warm-up")
        return ["functions.runtime"]
    for name in WARM_FACTORIES:
        factory = getattr(runtime, name, None)
        if not callable(factory):
            continue
        try:
            factory()
        except Exception as exc:
            failed.append(name)
            logging.getLogger(__name__).warning("warm-up of %s failed: %s", name, exc)
    return failed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the functions' main.py")
    parser.add_argument("--target", action="append", required=True, help="repeat per target")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-warm-up", action="store_true", help="open connections lazily")
    args = parser.parse_args(argv)
    from functions_framework._http import create_server

    # Enough threads for a long job (poll_signals, pnl_mtm) next to pushes.
    os.environ.setdefault("THREADS", "32")
    app = build_app(args.source, args.target)
    if not args.no_warm_up:
        warm_up()
    create_server(app, False).run(args.host, args.port)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
