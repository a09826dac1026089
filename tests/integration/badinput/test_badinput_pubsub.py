"""Oversized and malformed Pub/Sub messages to dispatch_signal and alert_fanout.

Each message arrives as Eventarc delivers it (a binary-mode CloudEvent whose
body is the Pub/Sub push envelope) at the real function under
functions-framework. A message that is not a usable signal or alert must be:
- acknowledged (2xx): Pub/Sub would otherwise redeliver it forever;
- logged with a line that names the message and the reason;
- acted on never: the sidecar, Telegram and SendGrid are all pointed at a
  local recorder, and the recorder must see no request at all.
A valid message sent last proves the recorder is wired where a trade (or a
delivery) would go, so "no request" means "nothing traded", not "wrong port".
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from fn_harness import PUBSUB_EVENT_TYPE, FunctionEnv, FunctionServer
from spreadpilot.domain.alerts import Alert, AlertType
from spreadpilot.domain.followers import Follower
from spreadpilot.domain.signals import Signal, SignalLimits, limits_problem, manual_signal
from spreadpilot.standins._http import RecordedRequest, Reply, StandInServer
from spreadpilot.storage.alerts import AlertsRepository
from spreadpilot.storage.followers import FollowersRepository

FOLLOWER = "badinput-follower"
BOT_TOKEN = "123456:BADINPUT-token"
SENDGRID_KEY = "SG.badinput-key"
DAY = date(2049, 6, 15)
# Dispatch markers live in the shared Redis: an id of this run's own.
SIGNAL_ID = f"badinput-{uuid.uuid4().hex[:12]}"


class Recorder(StandInServer):
    """Where the sidecar, Telegram and SendGrid would be: records, answers success.

    It answers as each real service does on success so that the one valid
    message of a test completes normally; the bad ones must never get here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.route("POST", "/trade/signal", self._trade)
        self.route("POST", "/{bot}/sendMessage", self._telegram)
        self.route("POST", "/v3/mail/send", lambda r, p: Reply(202, None))
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            self.route(method, "/{rest...}", lambda r, p: Reply(200, {}))

    def _trade(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        return Reply(202, {"execution_ids": [f"exec-{uuid.uuid4().hex[:8]}"]})

    def _telegram(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        return Reply(200, {"ok": True, "result": {"message_id": len(self.requests) + 1}})


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    server.start()
    yield server
    server.stop()


# ---------------------------------------------------------------- delivery


def deliver(fn: FunctionServer, message: Any, *, topic: str) -> tuple[str, httpx.Response]:
    """POST one Pub/Sub push envelope whose ``message`` is given raw (may be malformed)."""
    event_id = uuid.uuid4().hex
    body = {"message": message, "subscription": f"projects/p/subscriptions/{topic}-sub"}
    headers = {
        "ce-id": event_id,
        "ce-specversion": "1.0",
        "ce-source": f"//pubsub.googleapis.com/projects/p/topics/{topic}",
        "ce-type": PUBSUB_EVENT_TYPE,
        "ce-time": "2049-06-15T13:27:00Z",
        "content-type": "application/json",
    }
    response = httpx.post(fn.url, content=json.dumps(body), headers=headers, timeout=120)
    return event_id, response


def envelope(data: bytes | str | None, **attributes: str) -> dict[str, Any]:
    """A Pub/Sub message: bytes are base64-encoded as Pub/Sub does; str is sent as is."""
    message: dict[str, Any] = {
        "attributes": attributes,
        "messageId": uuid.uuid4().hex,
        "publishTime": "2049-06-15T13:27:00Z",
    }
    if data is not None:
        encoded = base64.b64encode(data).decode("ascii") if isinstance(data, bytes) else data
        message["data"] = encoded
    return message


@dataclass(frozen=True)
class Case:
    name: str
    message: Any
    reason: str  # words the log line must carry


def _signal_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(valid_signal().to_json())
    body.update(overrides)
    return body


def valid_signal() -> Signal:
    return manual_signal(
        {
            "strategy": "bull_put",
            "qty_per_leg": 2,
            "strike_long": 445,
            "strike_short": 450,
            "signal_id": SIGNAL_ID,
        },
        today=DAY,
    )


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _raw_json(text: str) -> bytes:
    return text.encode()


SIGNAL_CASES = [
    Case(
        "oversized 1 MiB signal",
        envelope(_json(_signal_body(source="manual" + " " * (1 << 20)))),
        "oversized",
    ),
    Case("oversized 8 MiB of random bytes", envelope(os.urandom(8 << 20)), "oversized"),
    Case("no data", envelope(None), "no data"),
    Case("empty data", envelope(b""), "no data"),
    Case("data not base64", envelope("%%% not base64 %%%"), "not base64"),
    Case("data not a string", {"data": 12345, "messageId": "m"}, "no data"),
    Case("no message", None, "no Pub/Sub message"),
    Case("message is a list", ["data"], "no Pub/Sub message"),
    Case("random bytes", envelope(os.urandom(512)), "not a valid signal"),
    Case("invalid UTF-8", envelope(b'{"strategy": "\xff\xfe"}'), "not a valid signal"),
    Case("JSON null", envelope(b"null"), "not a valid signal"),
    Case("JSON array", envelope(_json([1, 2, 3])), "not a valid signal"),
    Case("JSON string", envelope(_json("bull_put 445 450")), "not a valid signal"),
    Case("missing fields", envelope(_json({"strategy": "bull_put"})), "not a valid signal"),
    Case("unknown field", envelope(_json(_signal_body(sneaky=1))), "not a valid signal"),
    Case(
        "debit spread (long put above short put)",
        envelope(_json(_signal_body(strike_long=450.0, strike_short=445.0))),
        "not a valid signal",
    ),
    Case("zero qty", envelope(_json(_signal_body(qty_per_leg=0))), "not a valid signal"),
    Case("fractional qty", envelope(_json(_signal_body(qty_per_leg=2.5))), "not a valid signal"),
    Case("negative strike", envelope(_json(_signal_body(strike_long=-5))), "not a valid signal"),
    Case(
        "NaN strike",
        envelope(_raw_json(json.dumps(_signal_body()).replace("445.0", "NaN"))),
        "not a valid signal",
    ),
    Case(
        "infinite strike",
        envelope(_raw_json(json.dumps(_signal_body()).replace("450.0", "1e999999"))),
        "not a valid signal",
    ),
    # Deep but under the size cap, so the parser itself meets it.
    Case("deeply nested JSON", envelope(_raw_json("[" * 12_000)), "not a valid signal"),
    Case(
        "signal_id attribute differs from the body",
        envelope(_json(_signal_body()), signal_id="someone-elses-signal"),
        "does not match",
    ),
]

# Structurally valid signals that break this deployment's limits (SPEC 2:
# qty 1..MAX_QTY_PER_LEG, strikes on the grid, width <= MAX_SPREAD_WIDTH).
LIMIT_CASES = [
    Case("qty 10**30", envelope(_json(_signal_body(qty_per_leg=10**30))), "qty per leg"),
    Case("qty above MAX_QTY_PER_LEG", envelope(_json(_signal_body(qty_per_leg=51))), "qty"),
    Case(
        "width 25 above MAX_SPREAD_WIDTH",
        envelope(_json(_signal_body(strike_long=425.0))),
        "MAX_SPREAD_WIDTH",
    ),
    Case("strike off the grid", envelope(_json(_signal_body(strike_long=445.5))), "grid"),
]


# ---------------------------------------------------------------- dispatch_signal


@pytest.fixture
def dispatch_fn(
    function_env: FunctionEnv, recorder: Recorder, mongo_db: Any, redis_client: Any
) -> Iterator[FunctionServer]:
    FollowersRepository(mongo_db).add(
        Follower.model_validate(
            {
                "_id": FOLLOWER,
                "name": "Bad Input",
                "gateway": {"host": "127.0.0.1", "port": 4002, "client_id": 7},
                "account": "DU7654321",
            }
        )
    )
    fn = function_env.start(
        "dispatch_signal", SIDECAR_URL=recorder.base_url, SIDECAR_TOKEN="badinput-token"
    )
    yield fn
    redis_client.delete(f"dispatch:{valid_signal().signal_id}:{FOLLOWER}")


def _check_rejected(fn: FunctionServer, cases: list[Case], topic: str) -> list[str]:
    """Deliver every case; the problems found (empty when all were handled right)."""
    problems: list[str] = []
    for case in cases:
        event_id, response = deliver(fn, case.message, topic=topic)
        if not 200 <= response.status_code < 300:
            problems.append(f"{case.name}: HTTP {response.status_code} (would be redelivered)")
            continue
        lines = [line for line in fn.logs().splitlines() if f"message {event_id}:" in line]
        if not lines:
            problems.append(f"{case.name}: no log line names message {event_id}")
        elif case.reason not in lines[0]:
            problems.append(f"{case.name}: log line lacks {case.reason!r}: {lines[0][:300]}")
        elif len(lines[0]) > 1000:
            problems.append(f"{case.name}: log line of {len(lines[0])} characters")
    return problems


def test_bad_signal_messages_are_acknowledged_logged_and_never_traded(
    dispatch_fn: FunctionServer, recorder: Recorder
) -> None:
    problems = _check_rejected(dispatch_fn, SIGNAL_CASES, "signals")
    assert problems == [], "\n".join(problems) + "\n" + dispatch_fn.logs()[-3000:]
    assert recorder.requests == [], [(r.method, r.path) for r in recorder.requests]
    assert "Traceback" not in dispatch_fn.logs(), dispatch_fn.logs()[-3000:]

    # The control: a valid signal does reach the recorder, once.
    signal = valid_signal()
    _, response = deliver(
        dispatch_fn,
        envelope(_json(json.loads(signal.to_json())), signal_id=signal.signal_id),
        topic="signals",
    )
    assert response.status_code == 200, dispatch_fn.logs()[-3000:]
    trades = [r for r in recorder.requests if r.path == "/trade/signal"]
    assert len(trades) == 1 and trades[0].json()["signal_id"] == signal.signal_id


def test_signals_beyond_the_limits_are_not_traded(
    dispatch_fn: FunctionServer, recorder: Recorder
) -> None:
    for case in LIMIT_CASES:  # the domain check itself knows each is out of limits
        body = json.loads(base64.b64decode(case.message["data"]))
        assert limits_problem(Signal.model_validate(body), SignalLimits()) is not None
    problems = _check_rejected(dispatch_fn, LIMIT_CASES, "signals")
    assert recorder.requests == [], [(r.method, r.path) for r in recorder.requests]
    assert problems == [], "\n".join(problems)


# ---------------------------------------------------------------- alert_fanout


def valid_alert() -> Alert:
    return Alert.create(
        AlertType.LIMIT_REACHED,
        None,
        "Ladder ended unfilled",
        {"attempts": 10, "initial_limit": -0.85, "final_limit": -0.76, "filled_qty": 0},
        datetime.now(UTC),
        id=f"badinput-{uuid.uuid4().hex}",
    )


def _alert_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(valid_alert().to_json())
    body.update(overrides)
    return body


ALERT_CASES = [
    Case(
        "oversized 1 MiB alert",
        envelope(_json(_alert_body(message="x" * (1 << 20)))),
        "oversized",
    ),
    Case("oversized 8 MiB of random bytes", envelope(os.urandom(8 << 20)), "oversized"),
    Case("no data", envelope(None), "no message data"),
    Case("no message", None, "no message data"),
    Case("data not base64", envelope("%%% not base64 %%%"), "not an alert"),
    Case("random bytes", envelope(os.urandom(512)), "not an alert"),
    Case("JSON array", envelope(_json([1, 2])), "not an alert"),
    Case("unknown type", envelope(_json(_alert_body(type="MARGIN_CALL_LOL"))), "not an alert"),
    Case("unknown severity", envelope(_json(_alert_body(severity="PANIC"))), "not an alert"),
    Case("naive timestamp", envelope(_json(_alert_body(created_at="2049-06-15T13:27:00"))), "not"),
    Case("empty id", envelope(_json(_alert_body(id=""))), "not an alert"),
    Case("deeply nested JSON", envelope(_raw_json('{"a":' * 8_000)), "not an alert"),
]


@pytest.fixture
def fanout_fn(
    function_env: FunctionEnv, recorder: Recorder, mongo_db: Any
) -> Iterator[FunctionServer]:
    AlertsRepository(mongo_db).ensure_indexes()
    fn = function_env.start(
        "alert_fanout",
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        TELEGRAM_ADMIN_CHAT_ID="1001",
        TELEGRAM_API_BASE=recorder.base_url,
        SENDGRID_API_KEY=SENDGRID_KEY,
        SENDGRID_API_BASE=recorder.base_url,
        ADMIN_EMAIL="ops@example.com",
        ALERT_RETRY_BASE_SECONDS="0.05",
        ALERT_RETRY_MAX_SECONDS="0.2",
    )
    yield fn


def test_bad_alert_messages_are_acknowledged_logged_and_never_sent(
    fanout_fn: FunctionServer, recorder: Recorder, redis_client: Any
) -> None:
    problems = _check_rejected(fanout_fn, ALERT_CASES, "alerts")
    assert problems == [], "\n".join(problems) + "\n" + fanout_fn.logs()[-3000:]
    assert recorder.requests == [], [(r.method, r.path) for r in recorder.requests]
    assert "Traceback" not in fanout_fn.logs(), fanout_fn.logs()[-3000:]

    # The control: a valid CRITICAL alert reaches Telegram and SendGrid (the recorder).
    alert = valid_alert()
    try:
        _, response = deliver(
            fanout_fn, envelope(alert.to_json().encode(), alert_id=alert.id), topic="alerts"
        )
        assert response.status_code == 200, fanout_fn.logs()[-3000:]
        paths = sorted(r.path for r in recorder.requests)
        assert paths == [f"/bot{BOT_TOKEN}/sendMessage", "/v3/mail/send"], paths
    finally:
        keys = list(redis_client.scan_iter(match=f"alert:*{alert.id}*", count=1000))
        if keys:
            redis_client.delete(*keys)
