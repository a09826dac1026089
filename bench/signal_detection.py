"""(e) Signal detection latency: sheet row written -> Pub/Sub message published.

The path measured is the production one: the real ``poll_signals`` Cloud
Function (functions-framework subprocess) reading the sheet with unmodified
gspread from the local Sheets API v4 stand-in once every
POLLING_INTERVAL_SECONDS (1.0, the default), recording the signal in the
MongoDB ledger, checking the Redis marker and publishing to the Pub/Sub fake.
One long invocation polls throughout, as one scheduled invocation does in
the signal window.

Per sample: today's row is written to the stand-in at a random phase of the
poll cycle (so the figure covers the whole cycle, not a lucky or unlucky
instant); the latency is the message's ``publish_time`` (stamped by the
Pub/Sub server when the function's publish reached it) minus the moment the
row became readable, both from this machine's clock. Between samples the row
is removed and, once the poller has seen it gone, the day's ledger entry and
marker are deleted, because the ledger accepts one signal per trading date
and the next sample needs a fresh one.

Uses its own MongoDB database, Pub/Sub project and a far-future trading day
(the ledger and markers are shared with nothing); everything is removed at
the end. Loopback only; every wait is bounded.

    .venv/bin/python bench/signal_detection.py [--samples 30] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from _report import Figure, Target, emit, latency_summary, percentile
from spreadpilot.clock import NEW_YORK
from spreadpilot.devstack import ensure_services
from spreadpilot.domain.signals import Signal
from spreadpilot.standins.sheets import SheetsStandIn

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK = Path(sys.executable).parent / "functions-framework"
SHEET_ID = "1BenchSignalDetectionSheet"
TARGET_P99_SECONDS = 1.5
HEADER = ["Date", "Ticker", "Strategy", "Qty per leg", "Strike Long", "Strike Short"]


def log(message: str) -> None:
    print(f"[signal_detection] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def us_date(day: date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


def far_weekday() -> date:
    """A random weekday decades ahead: no other run's ledger entry or marker uses it."""
    day = date(2045, 1, 1) + timedelta(days=random.randrange(0, 10 * 365))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def sheet_rows(day: date, strikes: tuple[int, int] | None) -> list[list[str]]:
    """Header, yesterday's row and, when ``strikes`` is given, today's bull put row."""
    rows = [HEADER, [us_date(day - timedelta(days=1)), "QQQ", "Short", "5", "460", "455"]]
    if strikes is not None:
        rows.append([us_date(day), "QQQ", "Long", "10", str(strikes[0]), str(strikes[1])])
    return rows


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)


class Bench:
    """The stack of one run: stand-in, stores, topics and the function process."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.services = ensure_services()
        os.environ.update(self.services.environ())  # the Pub/Sub clients read it
        self.tag = uuid.uuid4().hex[:10]
        self.project = f"bench-{self.tag}"
        self.db_name = f"bench_{self.tag}"
        self.day = far_weekday()
        self.sheets = SheetsStandIn().start()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = Path(tempfile.mkstemp(prefix="poll_signals-", suffix=".log")[1])
        self.markers: list[str] = []

        import pymongo
        import redis
        from google.cloud import pubsub_v1

        self.mongo: Any = pymongo.MongoClient(self.services.mongo_uri)
        self.redis: Any = redis.Redis.from_url(self.services.redis_url)
        self.publisher: Any = pubsub_v1.PublisherClient()
        self.subscriber: Any = pubsub_v1.SubscriberClient()
        self.topic = f"projects/{self.project}/topics/signals"
        self.alerts_topic = f"projects/{self.project}/topics/alerts"
        self.subscription = f"projects/{self.project}/subscriptions/signals-bench"

    def start(self) -> None:
        self.publisher.create_topic(name=self.topic)
        self.publisher.create_topic(name=self.alerts_topic)
        self.subscriber.create_subscription(
            name=self.subscription, topic=self.topic, ack_deadline_seconds=30
        )
        self.sheets.set_values(SHEET_ID, sheet_rows(self.day, None))
        port = free_port()
        signal_start = datetime.combine(self.day, datetime.min.time().replace(hour=9, minute=27))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
        env.update(
            {
                "MONGO_DB": self.db_name,
                "PUBSUB_PROJECT_ID": self.project,
                "GOOGLE_SHEET_URL": f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit",
                "GOOGLE_SHEETS_API_KEY": "bench-api-key",
                "SHEETS_API_BASE": self.sheets.base_url,
                "POLLING_INTERVAL_SECONDS": repr(self.interval),
                # The trading day's clock at real speed: today's date is self.day.
                "SIM_START": signal_start.replace(tzinfo=NEW_YORK).isoformat(),
                "SIM_SPEED": "1.0",
                "SIM_ANCHOR": repr(time.time()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        handle = self.log_file.open("wb")
        self.process = subprocess.Popen(
            [
                str(FRAMEWORK),
                "--target",
                "poll_signals",
                "--source",
                str(ROOT / "functions" / "main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=str(ROOT),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self._listening(port), 30, "functions-framework to listen")
        self.url = f"http://127.0.0.1:{port}/"

    def _listening(self, port: int) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"poll_signals exited:\n{self.function_log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def invoke(self, seconds: float) -> threading.Thread:
        """One long invocation in the background (Cloud Scheduler's call)."""

        def call() -> None:
            # The process is stopped at the end, which may cut this call short.
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(self.url, json={"duration_seconds": seconds}, timeout=seconds + 30)

        thread = threading.Thread(target=call, name="poll-invocation", daemon=True)
        thread.start()
        return thread

    def reads(self) -> int:
        return self.sheets.value_reads(SHEET_ID)

    def pull_one(self, timeout: float) -> tuple[Any, float]:
        """The next message on the subscription and when it was received."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 10}, timeout=5
            )
            received = list(response.received_messages)
            if received:
                at = time.time()
                self.subscriber.acknowledge(
                    request={
                        "subscription": self.subscription,
                        "ack_ids": [m.ack_id for m in received],
                    }
                )
                if len(received) > 1:
                    raise RuntimeError(f"{len(received)} messages for one row")
                return received[0].message, at
            time.sleep(0.01)
        raise TimeoutError(f"no Pub/Sub message within {timeout:.0f} s")

    def sample(self, index: int) -> dict[str, float]:
        """Write today's row at a random poll phase; measure until its message."""
        time.sleep(random.uniform(0.0, self.interval))
        strikes = (300 + index, 305 + index)  # a new signal id per sample
        self.sheets.set_values(SHEET_ID, sheet_rows(self.day, strikes))
        written = time.time()
        message, received = self.pull_one(timeout=10 * self.interval + 5)
        signal = Signal.from_json(message.data)
        if (signal.strike_long, signal.strike_short) != (float(strikes[0]), float(strikes[1])):
            raise RuntimeError(f"sample {index}: unexpected signal {signal.signal_id}")
        self.markers.append(f"signal:published:{signal.signal_id}")
        published = message.publish_time.timestamp()
        self.reset()
        return {"publish": published - written, "receive": received - written}

    def reset(self) -> None:
        """Remove today's row, wait until the poller has seen it gone, forget the day."""
        self.sheets.set_values(SHEET_ID, sheet_rows(self.day, None))
        seen = self.reads()
        # Two reads recorded after the change: the second began after the first
        # ended, so it saw the row gone, and the poller handles reads one by one.
        wait_until(lambda: self.reads() >= seen + 2, 5 * self.interval + 5, "the poller")
        self.mongo[self.db_name]["signals"].delete_many({"_id": self.day.isoformat()})
        self.redis.delete(*self.markers)

    def function_log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.sheets.stop()
        with contextlib.suppress(Exception):
            if self.markers:
                self.redis.delete(*self.markers)
        with contextlib.suppress(Exception):
            self.mongo.drop_database(self.db_name)
        with contextlib.suppress(Exception):
            self.subscriber.delete_subscription(request={"subscription": self.subscription})
        for topic in (self.topic, self.alerts_topic):
            with contextlib.suppress(Exception):
                self.publisher.delete_topic(request={"topic": topic})
        self.log_file.unlink(missing_ok=True)


def run(samples: int, interval: float) -> dict[str, Any]:
    bench = Bench(interval)
    try:
        bench.start()
        # Long enough for every sample (each is at most a few intervals) and then some.
        bench.invoke(seconds=samples * (6 * interval + 2) + 10)
        wait_until(lambda: bench.reads() >= 1, 30, "the first poll")
        results = []
        for index in range(samples):
            results.append(bench.sample(index))
            log(f"sample {index + 1}/{samples}: {results[-1]['publish']:.3f} s")
        return {
            "publish": [r["publish"] for r in results],
            "receive": [r["receive"] for r in results],
            "trading_day": bench.day.isoformat(),
        }
    except Exception:
        log(f"failed; poll_signals log tail:\n{bench.function_log()}")
        raise
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0, help="POLLING_INTERVAL_SECONDS")
    args = parser.parse_args()
    if not 1 <= args.samples <= 500:
        parser.error("--samples must be in 1..500")
    measured = run(args.samples, args.interval)
    publish = measured["publish"]
    emit(
        "signal_detection",
        "(e) signal detection latency",
        "Sheet row written to the Sheets API stand-in -> Pub/Sub `signals` message "
        f"published (server publish_time), through the real poll_signals function at "
        f"POLLING_INTERVAL_SECONDS={args.interval:g}; {args.samples} samples, each at a "
        "random phase of the poll cycle. Nearest-rank percentiles: with fewer than 100 "
        "samples p99 is the slowest sample.",
        [
            Figure("p50", round(percentile(publish, 50), 3), "s"),
            Figure("p95", round(percentile(publish, 95), 3), "s"),
            Figure("p99", round(percentile(publish, 99), 3), "s", Target("<", TARGET_P99_SECONDS)),
        ],
        {
            "polling_interval_seconds": args.interval,
            "samples": args.samples,
            "publish_latency_s": {k: round(v, 4) for k, v in latency_summary(publish).items()},
            "receive_latency_s": {
                k: round(v, 4) for k, v in latency_summary(measured["receive"]).items()
            },
            "note": (
                "receive = when this process pulled it; the fake's Pull waits up to ~0.5 s "
                "when empty, so this is an upper bound, shown only as a cross-check"
            ),
        },
    )


if __name__ == "__main__":
    main()
