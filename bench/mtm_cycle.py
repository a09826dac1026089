"""(d) One P&L mark-to-market cycle over 1,000 followers.

A cycle is one mark (``MarkToMarket.mark_once``; an invocation of
``pnl_mtm`` takes two, 30 s apart, and the wait is not in it): read the
followers from MongoDB, the marks from their sidecar's ``GET /positions``,
then per follower its day's fills from PostgreSQL, FIFO P&L with the marks,
and one ``pnl_intraday`` row. It is built by ``functions.runtime`` from the
environment, exactly as the function builds it, and timed in this process
(``run(force=True)`` with one mark).

Data: the real sidecar's ``/positions`` entry and the real fills (both legs,
with commissions) of one follower who opened one put spread on ibsim, copied
to every follower (``bench/_positions.py``), served over HTTP and stored in a
PostgreSQL database of the benchmark's own. The clock runs 60x so that every
cycle lands in a new 30 s slot (a real write, not a duplicate). One warm-up
cycle, then ``--cycles`` timed; the median is the figure.

    .venv/bin/python bench/mtm_cycle.py [--followers 1000] [--cycles 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from _positions import PositionsServer, captured_positions, payload_for
from _report import Figure, Target, emit, latency_summary
from _stack import TOKEN, bench_clock, log, stores
from tv_cycle import add_followers, profile_cycle


def copy_fills(dsn: str, fills: list[Any], follower_ids: list[str]) -> None:
    """The captured follower's fills, once per follower (new exec ids), in one statement."""
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.storage.fills import ExecutionFill, FillsRepository

    repo = FillsRepository(Postgres(dsn))
    template = "tmpl"
    for row in fills:
        repo.upsert_execution(
            ExecutionFill(
                exec_id=row.exec_id,
                follower_id=template,
                account=row.account,
                symbol=row.symbol,
                sec_type=row.sec_type,
                side=row.side,
                qty=row.qty,
                price=row.price,
                exec_time=row.exec_time,
                trading_date=row.trading_date,
                order_ref=row.order_ref,
                perm_id=row.perm_id,
                order_id=row.order_id,
                con_id=row.con_id,
                right=row.right,
                strike=row.strike,
                expiry=row.expiry,
                multiplier=row.multiplier,
            )
        )
        if row.commission is not None:
            repo.attach_commission(row.exec_id, row.commission, row.commission_currency or "USD")
    from urllib.parse import urlsplit

    import pg8000.native

    parts = urlsplit(dsn)
    con = pg8000.native.Connection(
        user=parts.username or "",
        password=parts.password,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        database=parts.path.lstrip("/"),
    )
    try:
        con.run(
            """
            INSERT INTO fills (exec_id, follower_id, account, order_ref, perm_id, order_id,
                con_id, symbol, sec_type, "right", strike, expiry, multiplier, side, qty,
                price, commission, commission_currency, realized_pnl_ib, exec_time, trading_date)
            SELECT f.exec_id || '-' || ids.fid, ids.fid, account, order_ref, perm_id, order_id,
                con_id, symbol, sec_type, "right", strike, expiry, multiplier, side, qty,
                price, commission, commission_currency, realized_pnl_ib, exec_time, trading_date
            FROM fills f CROSS JOIN unnest(CAST(:ids AS text[])) AS ids(fid)
            WHERE f.follower_id = :template
            """,
            ids=follower_ids,
            template=template,
        )
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="pyinstrument one cycle (stderr)")
    args = parser.parse_args()
    log("capturing a real /positions entry and fills from the sidecar on ibsim")
    entry, fills = captured_positions()
    ids = [f"mtm{i:04d}" for i in range(args.followers)]
    server = PositionsServer(payload_for(entry, ids))
    db = stores()
    try:
        add_followers(db, ids, server.url)
        copy_fills(db.pg_dsn, fills, ids)
        services = db.services
        os.environ.update(
            {
                **services.environ(),
                "MONGO_URI": services.mongo_uri,
                "MONGO_DB": db.name,
                "PNL_DATABASE_URL": db.pg_dsn,
                "SIDECAR_URL": server.url,
                "SIDECAR_TOKEN": TOKEN,
                **bench_clock(60.0).to_env(),
            }
        )
        from functions import runtime

        job = runtime.mark_to_market(1, 30.0)
        samples: list[float] = []
        report: Any = None
        for cycle in range(args.cycles + 1):
            time.sleep(0.6)  # the next 30 s slot at 60x
            started = time.perf_counter()
            report = job.run(force=True)
            spent = time.perf_counter() - started
            if cycle > 0:
                samples.append(spent)
        last = report.__dict__ if report is not None else {}
        if args.profile:
            time.sleep(0.6)
            profile_cycle(lambda: job.run(force=True))
    finally:
        server.stop()
        db.drop()
    emit(
        "mtm_cycle",
        f"(d) P&L mark-to-market cycle, {args.followers} followers",
        "One mark (followers, /positions marks, each follower's fills, FIFO P&L, one "
        "pnl_intraday row each), excluding the 30 s wait; real sidecar payload and fills "
        "copied to every follower.",
        [Figure("cycle (median)", round(statistics.median(samples), 4), "s", Target("<", 2.0))],
        {
            "cycle": latency_summary(samples),
            "followers": args.followers,
            "last_report": {
                k: (len(v) if isinstance(v, list | dict) else v) for k, v in last.items()
            },
        },
    )


if __name__ == "__main__":
    main()
