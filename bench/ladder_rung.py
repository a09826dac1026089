"""(b) One ladder rung (modify in place + acknowledgement): sidecar against raw ib_async.

What is timed, per rung:

* sidecar: from the moment the executor decided to move to the next rung (the
  rung's ``rung_started_at``, which it stamps just before writing the rung to
  sending the modification) to the moment ibsim applied the new limit to the
  same order id: ``placeOrder`` with the same id through the sidecar's broker
  adapter, on the sidecar's busy event loop. The record is written right
  after the move (see the executor), so the write is not in it, and neither
  is the wait of the rung itself (TIMEOUT_SECONDS).
* baseline (``bench/_baseline.py``, its own process): from just before
  ``placeOrder`` with the same order id and a limit one tick lower, to ibsim
  applying it.

Both are timed at ibsim (``bench/_stack.py``). One follower, fills paused so
the order stays working; the sidecar runs on a clock 100x faster with 50 s
rungs, so a rung lasts half a wall second. ``--executions`` ladders of 10 rungs (9 moves each)
are measured, and as many baseline moves.

    .venv/bin/python bench/ladder_rung.py [--executions 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import datetime

from _report import Figure, Target, emit, latency_summary
from _stack import Baseline, Gateway, Sidecar, bench_clock, log, stores
from spreadpilot.clock import ScaledClock

ACCOUNT = "DU8900001"
#: Simulated seconds per wall second. The rung's start is read back from the
#: execution record, which keeps whole milliseconds (BSON) of simulated time:
#: at 100x that is 0.01 wall ms, well below the ~0.6 ms being measured (at 10x
#: the truncation alone added 0.05 ms on average to the sidecar's side).
SPEED = 100.0
#: A rung works 50 simulated seconds: half a wall second, as 5 s at 10x did.
RUNG_SECONDS = "50"
RUNG_WALL_SECONDS = float(RUNG_SECONDS) / SPEED
BODY = {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 475, "strike_short": 480}


def wall_of(clock: ScaledClock, moment: datetime) -> float:
    """The wall time (epoch seconds) at which ``clock`` reads ``moment``."""
    env = clock.to_env()
    start = datetime.fromisoformat(env["SIM_START"])
    return float(env["SIM_ANCHOR"]) + (moment - start).total_seconds() / float(env["SIM_SPEED"])


def sidecar_rungs(gateway: Gateway, executions: int) -> list[float]:
    clock: ScaledClock = gateway.sim.clock
    db = stores()
    samples: list[float] = []
    try:
        followers = db.add_followers(gateway, [ACCOUNT], max_open_spreads=100)
        sidecar = Sidecar(db, clock, followers, TIMEOUT_SECONDS=RUNG_SECONDS, MAX_ATTEMPTS="10")
        try:
            for run in range(executions + 1):
                body = {**BODY, "signal_id": f"rung-{run}-{uuid.uuid4().hex[:6]}"}
                reply = sidecar.http.post("/trade/signal", json=body)
                ex = str(reply.json()["executions"][0]["execution_id"])
                started: dict[int, float] = {}
                order_id = None
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    rec = sidecar.http.get(f"/executions/{ex}").json()
                    order_id = rec.get("order_id") or order_id
                    rung = rec.get("rung")
                    if rung is not None and rec.get("rung_started_at"):
                        started.setdefault(
                            int(rung),
                            wall_of(clock, datetime.fromisoformat(rec["rung_started_at"])),
                        )
                    if rec["state"] not in ("RECEIVED", "SIZED", "QUOTED", "MARGIN_OK", "WORKING"):
                        break
                    # Each rung lasts half a second: a look every 0.1 s sees every
                    # one, and keeps the reads off the sidecar while it moves.
                    time.sleep(0.1)
                applied = [
                    t
                    for acct, oid, _limit, t in gateway.limit_changes()
                    if oid == order_id and acct == ACCOUNT
                ]
                moves = sorted(applied)
                if run > 0:  # run 0 warms up
                    for rung in range(1, 10):
                        if rung in started:
                            after = [t for t in moves if t >= started[rung]]
                            if after:
                                samples.append(after[0] - started[rung])
        finally:
            sidecar.stop()
    finally:
        db.drop()
    return samples


def baseline_rungs(gateway: Gateway, moves: int) -> list[float]:
    baseline = Baseline("ladder", [gateway.ports[ACCOUNT]], [ACCOUNT])
    samples: list[float] = []
    try:
        opened = baseline.command(
            cmd="open", ref=f"base-rung-{uuid.uuid4().hex[:6]}", qty=1, long=475, short=480
        )
        for n in range(moves + 3):
            # The same quiet half second before each move as a sidecar rung has,
            # and no polling of ibsim meanwhile: a gateway kept awake answers
            # faster than an idle one (measured here: ibsim applied a move
            # 0.27 ms after the bytes left the baseline, polled every 2 ms,
            # and 0.5 ms after they left the idle-waiting sidecar).
            time.sleep(RUNG_WALL_SECONDS)
            out = baseline.command(cmd="modify")
            t0 = float(out["t0"])
            # The reply comes once ib_async has the acknowledgement, which
            # ibsim sends after applying the move: it is already recorded.
            applied: list[float] = []
            deadline = time.monotonic() + 10
            while not applied and time.monotonic() < deadline:
                applied = [
                    t
                    for acct, oid, limit, t in gateway.limit_changes()
                    if acct == ACCOUNT
                    and oid == opened["order_id"]
                    and t >= t0
                    and abs(limit - float(out["limit"])) < 1e-9
                ]
                if not applied:
                    time.sleep(0.01)
            if n >= 3 and applied:  # the first moves warm up
                samples.append(min(applied) - t0)
    finally:
        baseline.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=10)
    args = parser.parse_args()
    gateway = Gateway([ACCOUNT], bench_clock(SPEED))
    try:
        log("ladder rungs through the sidecar")
        side = sidecar_rungs(gateway, args.executions)
        log("ladder rungs with raw ib_async")
        base = baseline_rungs(gateway, max(len(side), 9))
    finally:
        gateway.stop()
    s_med, b_med = statistics.median(side), statistics.median(base)
    emit(
        "ladder_rung",
        "(b) one ladder rung: sidecar vs raw ib_async",
        "A rung's modification (same order id, one tick) from the decision to ibsim applying "
        "it: through the sidecar (placeOrder; the record is written after) beside raw ib_async.",
        [
            Figure("sidecar rung (median)", round(s_med * 1000, 3), "ms"),
            Figure("baseline rung (median)", round(b_med * 1000, 3), "ms"),
            Figure("ratio sidecar/baseline", round(s_med / b_med, 2), "", Target("<=", 1.2)),
        ],
        {"sidecar": latency_summary(side), "baseline": latency_summary(base)},
    )


if __name__ == "__main__":
    main()
