"""(a) Fan-out: one signal to N = 1, 10, 50 followers, sidecar against raw ib_async.

What is timed, for each N:

* sidecar: ``POST /trade/signal`` (no ``follower_id``: every enabled follower)
  to the real ``spreadpilot sidecar`` process; from the moment the POST was
  sent to the moment ibsim acknowledged the LAST of the N entry orders (each
  follower's first order). Not from the 202: each follower's execution starts
  as soon as its record exists, so with many followers most orders are out
  before the 202 is; the time from the 202 is kept in details.
* baseline (``bench/_baseline.py``, one process, one ib_async client per
  gateway, connected beforehand as the sidecar's sessions are): the same broker
  work for every follower concurrently (qualify both legs, quote them, a
  what-if of the combo, place ONE combo order at minus the mid credit), from
  the command to the last acknowledgement.

Acknowledgements are timed at ibsim in both cases (``bench/_stack.py``), with
fills paused so every order stays working; the sidecar's ladder is one
2-second rung (then the remainder is cancelled), because a follower runs one
execution at a time and the next signal must not wait for this one. ibsim serves the 50 gateways
from this process; the sidecar (with MongoDB execution records, the real
stores) and the baseline each run in their own process. Each N: one warm-up
signal, then ``--runs`` measured ones, each sent once the previous one has
ended and settled (``SETTLE_SECONDS``, both sides); medians are reported.

    .venv/bin/python bench/fanout.py [--runs 5]

Why the sidecar cannot come near the baseline's time (the 1.2 ratio target):
the baseline writes nothing, the sidecar writes twice before each order
(the execution record, in one bulk insert for all followers, then the
compare-and-set that reserves the order id, the exactly-once gate) and takes
an HTTP request. At N=1 that is about 20 ms against 6 ms, and the writes are
most of it: FerretDB spends 3 to 4 ms of CPU on each write of an execution
record. At N=50 on two cores the window is CPU-bound: the sidecar, FerretDB
with its PostgreSQL and ibsim share the two cores (about 0.4, 0.3, 0.2 and
0.2 CPU-seconds in a 0.5 s window), so the figure moves with the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

from _report import Figure, Target, emit, latency_summary
from _stack import Baseline, Gateway, Sidecar, bench_clock, log, stores

SIZES = (1, 10, 50)
#: pause after a signal's executions ended, before the next signal
SETTLE_SECONDS = 1.0
BODY = {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 475, "strike_short": 480}


def wait_acked(gateway: Gateway, refs: set[str], timeout: float = 60.0) -> float:
    """Wall time at which ibsim had acknowledged an order for every ref (the last one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen, ref_of = gateway.snapshot()
        times = {ref_of[k]: t for k, t in seen.items() if ref_of[k] in refs}
        if len(times) == len(refs):
            return max(times.values())
        time.sleep(0.005)
    raise RuntimeError(f"only some of {len(refs)} orders were acknowledged")


def wait_final(sidecar: Sidecar, refs: set[str], timeout: float = 60.0) -> None:
    """Until every execution of the signal ended (its one rung ran out and was cancelled)."""
    deadline = time.monotonic() + timeout
    pending = set(refs)
    while pending and time.monotonic() < deadline:
        for ref in sorted(pending):
            state = sidecar.http.get(f"/executions/{ref}").json().get("state")
            if state not in ("RECEIVED", "SIZED", "QUOTED", "MARGIN_OK", "WORKING", "PARTIAL"):
                pending.discard(ref)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{len(pending)} executions did not end")


def sidecar_runs(gateway: Gateway, accounts: list[str], runs: int) -> dict[str, Any]:
    clock = gateway.sim.clock
    db = stores()
    try:
        followers = db.add_followers(gateway, accounts, max_open_spreads=100, max_qty_per_leg=50)
        sidecar = Sidecar(
            db,
            clock,
            followers,
            # One 2-second rung, then the remainder is cancelled: a follower runs one
            # execution at a time, so the next signal waits for this one to end.
            TIMEOUT_SECONDS="2",
            MAX_ATTEMPTS="1",
            SIDECAR_HEALTH_INTERVAL_SECONDS="5",
            SIDECAR_FOLLOWER_REFRESH_SECONDS="60",
        )
        try:
            from_202: list[float] = []
            from_post: list[float] = []
            for run in range(runs + 1):
                body = {**BODY, "signal_id": f"fan-{len(accounts)}-{run}-{uuid.uuid4().hex[:6]}"}
                t_post = time.time()
                reply = sidecar.http.post("/trade/signal", json=body)
                t_202 = time.time()
                if reply.status_code != 202:
                    raise RuntimeError(f"signal refused: {reply.status_code} {reply.text}")
                refs = {str(e["execution_id"]) for e in reply.json()["executions"]}
                try:
                    last = wait_acked(gateway, refs)
                except RuntimeError:
                    states = [sidecar.http.get(f"/executions/{r}").json() for r in sorted(refs)]
                    raise RuntimeError(
                        f"{[(s.get('state'), s.get('error')) for s in states][:5]}\n"
                        + sidecar.log_file.read_text()[-2000:]
                    ) from None
                if run > 0:  # run 0 warms up (connections, imports, caches)
                    from_202.append(last - t_202)
                    from_post.append(last - t_post)
                wait_final(sidecar, refs)
                # Settle before the next signal, as the baseline does: the
                # strategy's signals are minutes apart, and the previous one's
                # tail (its end alerts going out to Redis and Pub/Sub) is not
                # part of this one's fan-out.
                time.sleep(SETTLE_SECONDS)
        finally:
            sidecar.stop()
    finally:
        db.drop()
    return {"from_202": from_202, "from_post": from_post}


def baseline_runs(gateway: Gateway, accounts: list[str], runs: int) -> list[float]:
    baseline = Baseline("fanout", [gateway.ports[a] for a in accounts], accounts)
    samples: list[float] = []
    try:
        for run in range(runs + 1):
            ref = f"base-{len(accounts)}-{run}-{uuid.uuid4().hex[:6]}"
            out = baseline.command(cmd="go", ref=ref, qty=1, long=475, short=480)
            last = wait_acked(gateway, {f"{ref}-{n}" for n in range(len(accounts))})
            if run > 0:
                samples.append(last - float(out["t0"]))
            time.sleep(SETTLE_SECONDS)
    finally:
        baseline.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    accounts = [f"DU88{i:05d}" for i in range(1, max(SIZES) + 1)]
    gateway = Gateway(accounts, bench_clock(1.0))
    figures: list[Figure] = []
    details: dict[str, Any] = {"runs": args.runs}
    try:
        for n in SIZES:
            log(f"fan-out to {n} follower(s): sidecar")
            side = sidecar_runs(gateway, accounts[:n], args.runs)
            log(f"fan-out to {n} follower(s): raw ib_async baseline")
            base = baseline_runs(gateway, accounts[:n], args.runs)
            s_med = statistics.median(side["from_post"])
            b_med = statistics.median(base)
            figures.append(
                Figure(
                    f"N={n}: sidecar, signal POST to last ack (median)",
                    round(s_med, 4),
                    "s",
                    Target("<", 0.5) if n == 50 else None,
                )
            )
            figures.append(Figure(f"N={n}: baseline (median)", round(b_med, 4), "s"))
            figures.append(
                Figure(
                    f"N={n}: ratio sidecar/baseline", round(s_med / b_med, 2), "", Target("<=", 1.2)
                )
            )
            details[f"n{n}"] = {
                "sidecar_from_202": latency_summary(side["from_202"]),
                "sidecar_from_post": latency_summary(side["from_post"]),
                "baseline": latency_summary(base),
            }
    finally:
        gateway.stop()
    emit(
        "fanout",
        "(a) fan-out: one signal to N followers, sidecar vs raw ib_async",
        "Signal sent to the sidecar (POST /trade/signal) to every follower's entry order "
        "acknowledged by ibsim, "
        "beside a one-process ib_async script doing the same broker work "
        "(qualify, quote, what-if, place one combo) for the same followers.",
        figures,
        details,
    )


if __name__ == "__main__":
    main()
