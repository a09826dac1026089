"""``spreadpilot signal publish`` onto the Pub/Sub fake, and ``jobs list`` offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fn_harness import FunctionEnv, Topic
from spreadpilot.domain.signals import Signal

CLI = Path(sys.executable).parent / "spreadpilot"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_signal_publish_validates_and_publishes(
    function_env: FunctionEnv, topics: Callable[[str], Topic]
) -> None:
    signals = topics("signals")
    env = dict(function_env.base)
    ok = run(
        env,
        *("signal", "publish", "--strategy", "vertical_spread", "--qty-per-leg", "3"),
        *("--strike-long", "460", "--strike-short", "455", "--follower", "follower123"),
        *("--signal-id", "manual-001"),
    )
    assert ok.returncode == 0, ok.stderr
    [message] = signals.pull()
    signal = Signal.from_json(message.data)
    assert (signal.signal_id, signal.strategy.value, signal.source) == (
        "manual-001",
        "bear_call",
        "manual",
    )
    assert dict(message.attributes) == {
        "signal_id": "manual-001",
        "source": "manual",
        "follower_id": "follower123",
    }

    bad = run(
        env,
        *("signal", "publish", "--strategy", "bull_put", "--qty-per-leg", "3"),
        *("--strike-long", "460", "--strike-short", "455"),
    )
    assert bad.returncode == 2 and "long put below the short put" in bad.stderr
    assert signals.pull(wait=0.5) == []


def test_jobs_list_reads_the_schedule_table_offline() -> None:
    env = {k: v for k, v in os.environ.items() if "PUBSUB" not in k}
    listed = run(env, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = {j["name"]: j for j in json.loads(listed.stdout)}
    assert jobs["pnl-rollup-daily"]["schedule"] == "30 16 * * 1-5"
    assert jobs["alert-fanout"]["topic"] == "alerts"
    refused = run(env, "jobs", "pause", "alert-fanout")
    assert refused.returncode == 2 and "topic" in refused.stderr
