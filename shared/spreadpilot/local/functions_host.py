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


def warm_up(targets: Sequence[str]) -> dict[str, str]:
    """Open the hosted targets' connections before the first request.

    Delegates to ``functions.runtime.warm_up``, which knows what each entry
    point builds; failures are returned (and logged there), never fatal.
    """
    import logging

    try:
        from functions import runtime
    except Exception as exc:
        logging.getLogger(__name__).warning("functions.runtime not importable; no warm-up")
        return {"functions.runtime": str(exc)}
    return runtime.warm_up(targets)


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
        warm_up(args.target)
    create_server(app, False).run(args.host, args.port)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
