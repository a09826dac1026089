"""(c) One time-value monitor cycle over 200 followers with one spread each.

A cycle is what one ``tv_monitor`` invocation does (the function's work; the
scheduler's 60 s between invocations is not in it): read the enabled
followers from MongoDB, fetch ``GET /positions`` from their sidecar, classify
every spread (SAFE/RISK/CRITICAL from the short leg's time value), write each
status to Redis (``tv:{follower}``), publish every status event to the Redis
stream and Pub/Sub ``alerts``, then flush the alert publisher. It is built
by ``functions.runtime.tv_monitor()`` from the environment, exactly as the
function builds it, and timed in this process (``run(force=True)`` plus the
flush, as the entry point does).

The ``/positions`` answer is the real sidecar's, for one follower holding one
filled put spread on ibsim, copied to 200 followers and served over HTTP
(``bench/_positions.py`` says why). The stores are the real local ones. One
warm-up cycle, then ``--cycles`` timed; the median is the figure.

    .venv/bin/python bench/tv_cycle.py [--followers 200] [--cycles 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any

from _positions import PositionsServer, captured_positions, payload_for
from _report import Figure, Target, emit, latency_summary
from _stack import TOKEN, bench_clock, log, stores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="pyinstrument one cycle (stderr)")
    args = parser.parse_args()
    log("capturing a real /positions entry from the sidecar on ibsim")
    entry, _fills = captured_positions()
    ids = [f"tv{i:04d}" for i in range(args.followers)]
    server = PositionsServer(payload_for(entry, ids))
    db = stores()
    project = f"bench-tv-{uuid.uuid4().hex[:6]}"
    try:
        add_followers(db, ids, server.url)
        services = db.services
        os.environ.update(
            {
                **services.environ(),
                "MONGO_URI": services.mongo_uri,
                "MONGO_DB": db.name,
                "REDIS_URL": f"redis://127.0.0.1:{services.redis_port}/13",
                "PUBSUB_PROJECT_ID": project,
                "SIDECAR_URL": server.url,
                "SIDECAR_TOKEN": TOKEN,
                **bench_clock(1.0).to_env(),
            }
        )
        from functions import runtime

        monitor = runtime.tv_monitor()
        samples: list[float] = []
        report: Any = None
        for cycle in range(args.cycles + 1):
            started = time.perf_counter()
            report = monitor.run(force=True)
            runtime.alert_publisher().flush()
            spent = time.perf_counter() - started
            if cycle > 0:
                samples.append(spent)
        checked = report.as_dict() if report is not None else {}
        if args.profile:
            profile_cycle(lambda: (monitor.run(force=True), runtime.alert_publisher().flush()))
    finally:
        server.stop()
        db.drop()
        import redis

        redis.Redis.from_url(f"redis://127.0.0.1:{db.services.redis_port}/13").flushdb()
    emit(
        "tv_cycle",
        f"(c) TV monitor cycle, {args.followers} followers x 1 spread",
        "One tv_monitor invocation's work (followers, /positions, TV status per spread to "
        "Redis, status events to the alerts stream and Pub/Sub), excluding the 60 s wait; "
        "the sidecar's real /positions payload copied to every follower, served over HTTP.",
        [Figure("cycle (median)", round(statistics.median(samples), 4), "s", Target("<", 1.0))],
        {
            "cycle": latency_summary(samples),
            "followers": args.followers,
            "last_report": _brief(checked),
        },
    )


def profile_cycle(cycle: Any) -> None:
    """One more cycle under pyinstrument, the call tree to stderr (where the time goes)."""
    import sys

    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    cycle()
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)


def add_followers(db: Any, ids: list[str], sidecar_url: str) -> None:
    from spreadpilot.domain.followers import Follower, GatewayEndpoint
    from spreadpilot.storage.followers import FollowersRepository

    repo = FollowersRepository(db.mongo())
    for n, fid in enumerate(ids):
        repo.add(
            Follower(
                _id=fid,
                name=fid,
                gateway=GatewayEndpoint(host="127.0.0.1", port=20000 + n % 40000, client_id=1),
                account=f"DU{7000000 + n}",
                sidecar_url=sidecar_url,
            )
        )


def _brief(report: dict[str, Any]) -> dict[str, Any]:
    """The report's counts (its lists would be long)."""
    return {k: (len(v) if isinstance(v, list | dict) else v) for k, v in report.items()}


if __name__ == "__main__":
    main()
