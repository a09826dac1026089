"""Every Pub/Sub message delivered twice and out of order.

Signals (to dispatch_signal) and alerts (to alert_fanout) pile up in their
subscriptions, then the push loop delivers each batch with every message
twice (same message id, as a Pub/Sub redelivery), shuffled, four deliveries at
a time so duplicates race. Each (signal, follower) must trade exactly once,
and each alert reach Telegram exactly once.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from chaos_harness import FINAL_STATES, TRADE_DAY, ChaosFactory, ChaosStack, wait_for
from spreadpilot.domain.alerts import Alert, AlertType, Severity
from spreadpilot.domain.signals import manual_signal

SIGNALS = [
    {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 475, "strike_short": 480},
    {"strategy": "bull_put", "qty_per_leg": 2, "strike_long": 476, "strike_short": 481},
    {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 477, "strike_short": 482},
    # Far out of the money: mid credit under MIN_PRICE, a WARNING alert and no order.
    {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 440, "strike_short": 445},
]


def test_every_message_twice_and_out_of_order(chaos_stack: ChaosFactory) -> None:
    stack: ChaosStack = chaos_stack(3, twice_shuffled=True)
    signals = [
        manual_signal({**body, "signal_id": f"dup-{n}-{uuid.uuid4().hex[:6]}"}, today=TRADE_DAY)
        for n, body in enumerate(SIGNALS)
    ]
    stack.pushers["signals"].hold()
    stack.pushers["alerts"].hold()
    for signal in signals:
        stack.publish_signal(signal)
    stack.pushers["signals"].release()

    def all_final() -> list[dict[str, object]] | None:
        docs = stack.executions_in_mongo()
        if len(docs) < 12:
            return None
        return docs if all(d["state"] in FINAL_STATES for d in docs) else None

    docs = wait_for(all_final, 90, interval=0.25, what="every execution final")
    per_pair = Counter((d["signal_id"], d["follower_id"]) for d in docs)
    assert set(per_pair.values()) == {1} and len(per_pair) == 12
    states = {(d["signal_id"], d["follower_id"]): d["state"] for d in docs}
    assert states[(signals[3].signal_id, "f1")] == "MID_TOO_LOW"
    stack.pushers["signals"].wait_idle(30)
    assert stack.pushers["signals"].attempts >= 2 * len(signals)

    # Alerts: the whole pile at once, every message twice, shuffled.
    stack.pushers["alerts"].release()
    # Delivered or dead-lettered, every one. (Exactly once is the xfail test below.)
    seen = stack.assert_properties()
    assert seen["orders"] == 9  # three tradable signals x three followers, one order each
    assert seen["alerts"] >= 12  # a final alert per execution, at the least
    assert stack.pushers["alerts"].attempts >= 2 * seen["alerts"]
    assert len(stack.telegram.messages) >= seen["alerts"]


def test_concurrent_redeliveries_send_each_alert_once(chaos_stack: ChaosFactory) -> None:
    """The same alert delivered 8 times at once, for 16 alerts: one Telegram message each."""
    stack = chaos_stack(1)
    fanout = stack.functions["alerts"]
    alerts = [
        Alert.create(
            AlertType.LIMIT_REACHED,
            Severity.WARNING,
            "ladder ended unfilled",
            {"attempts": 10},
            datetime.now(UTC),
            follower_id="f1",
            id=f"race-{n}-{uuid.uuid4().hex[:8]}",
        )
        for n in range(16)
    ]
    copies = 8

    def deliver(alert: Alert, barrier: threading.Barrier) -> int:
        data = alert.to_json().encode()
        barrier.wait(10)
        reply = fanout.cloud_event(
            data, {"alert_id": alert.id}, message_id=alert.id, topic="alerts"
        )
        return reply.status_code

    codes: list[int] = []
    with ThreadPoolExecutor(copies) as pool:
        for alert in alerts:  # the copies of one alert arrive together
            barrier = threading.Barrier(copies)
            codes += pool.map(lambda _n, a=alert, b=barrier: deliver(a, b), range(copies))
    assert set(codes) <= {200, 500}  # 500: "in flight elsewhere", Pub/Sub would redeliver
    sent = stack.telegram_by_alert()
    assert {a.id: sent[a.id] for a in alerts} == {a.id: 1 for a in alerts}
