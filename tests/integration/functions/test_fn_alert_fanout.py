"""alert_fanout through functions-framework CloudEvents, against the local
Telegram Bot API and SendGrid v3 stand-ins, Redis (dedup) and MongoDB (status)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fn_harness import FunctionEnv, FunctionServer
from spreadpilot.domain.alerts import Alert, AlertType, Severity
from spreadpilot.domain.followers import Follower
from spreadpilot.standins import SendGridStandIn, TelegramStandIn
from spreadpilot.storage.alerts import AlertsRepository, DeliveryStatus
from spreadpilot.storage.followers import FollowersRepository

BOT_TOKEN = "123456:TEST-token"
SENDGRID_KEY = "SG.test-key"
ADMIN_CHAT = "1001"
FOLLOWER_CHAT = "2002"
ADMIN_EMAIL = "ops@example.com"


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    server = TelegramStandIn(token=BOT_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def sendgrid() -> Iterator[SendGridStandIn]:
    server = SendGridStandIn(api_key=SENDGRID_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def fanout(
    function_env: FunctionEnv,
    telegram: TelegramStandIn,
    sendgrid: SendGridStandIn,
    mongo_db: Any,
    redis_client: Any,
) -> Iterator[FunctionServer]:
    FollowersRepository(mongo_db).add(
        Follower.model_validate(
            {
                "_id": "follower123",
                "name": "Follower One",
                "telegram_chat_id": FOLLOWER_CHAT,
                "gateway": {"host": "127.0.0.1", "port": 4002, "client_id": 7},
                "account": "DU1234567",
            }
        )
    )
    AlertsRepository(mongo_db).ensure_indexes()
    server = function_env.start(
        "alert_fanout",
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        TELEGRAM_ADMIN_CHAT_ID=ADMIN_CHAT,
        TELEGRAM_API_BASE=telegram.base_url,
        SENDGRID_API_KEY=SENDGRID_KEY,
        SENDGRID_API_BASE=sendgrid.base_url,
        ADMIN_EMAIL=ADMIN_EMAIL,
        ALERT_RETRY_BASE_SECONDS="0.05",
        ALERT_RETRY_MAX_SECONDS="0.2",
        ALERT_MAX_ATTEMPTS="4",
    )
    yield server
    keys = list(redis_client.scan_iter(match="alert:sent:test-*", count=1000))
    if keys:
        redis_client.delete(*keys)


def make_alert(
    severity: Severity = Severity.CRITICAL, follower_id: str | None = "follower123"
) -> Alert:
    return Alert.create(
        AlertType.LIMIT_REACHED,
        severity,
        "Ladder ended unfilled",
        {"attempts": 10, "initial_limit": -0.85, "final_limit": -0.76, "filled_qty": 0},
        datetime.now(UTC),
        follower_id=follower_id,
        id=f"test-{uuid.uuid4().hex}",
    )


def deliver(fn: FunctionServer, alert: Alert) -> None:
    response = fn.cloud_event(alert.to_json().encode(), {"alert_id": alert.id}, topic="alerts")
    assert response.status_code == 200, fn.logs()


def chats(telegram: TelegramStandIn) -> list[str]:
    return sorted(m.chat_id for m in telegram.messages)


def test_channels_failing_twice_then_succeeding_deliver_exactly_once(
    fanout: FunctionServer, telegram: TelegramStandIn, sendgrid: SendGridStandIn, mongo_db: Any
) -> None:
    telegram.faults.fail_next(2, status=502)
    sendgrid.faults.fail_next(2, status=503)
    alert = make_alert()
    deliver(fanout, alert)

    assert chats(telegram) == [ADMIN_CHAT, FOLLOWER_CHAT]
    assert telegram.attempts() == 4  # two failures, then one success per chat
    assert [m.to for m in sendgrid.mails] == [(ADMIN_EMAIL,)]
    assert sendgrid.attempts() == 3
    text = telegram.messages[0].text
    assert "LIMIT_REACHED" in text and "final_limit: -0.76" in text
    stored = AlertsRepository(mongo_db).get(alert.id)
    assert stored is not None
    assert {c: d.status for c, d in stored.deliveries.items()} == {
        "telegram_admin": DeliveryStatus.SENT,
        "telegram_follower": DeliveryStatus.SENT,
        "email_admin": DeliveryStatus.SENT,
    }


def test_same_alert_delivered_twice_is_sent_once(
    fanout: FunctionServer, telegram: TelegramStandIn, sendgrid: SendGridStandIn
) -> None:
    alert = make_alert()
    deliver(fanout, alert)
    deliver(fanout, alert)
    assert chats(telegram) == [ADMIN_CHAT, FOLLOWER_CHAT]
    assert len(sendgrid.mails) == 1


def test_permanently_failing_channel_ends_in_dead_letter(
    fanout: FunctionServer, telegram: TelegramStandIn, sendgrid: SendGridStandIn, mongo_db: Any
) -> None:
    telegram.faults.fail_always(403)  # bot blocked: no retry can help
    sendgrid.faults.fail_always(500)  # keeps failing past the last retry
    alert = make_alert(follower_id=None)
    deliver(fanout, alert)
    assert telegram.messages == [] and sendgrid.mails == []
    assert telegram.attempts() == 1
    assert sendgrid.attempts() == 4

    repo = AlertsRepository(mongo_db)
    letters = {d.channel: d for d in repo.list_dead_letters()}
    assert set(letters) == {"telegram_admin", "email_admin"}
    assert "403" in (letters["telegram_admin"].error or "")
    assert BOT_TOKEN not in (letters["telegram_admin"].error or "")
    assert "after 4 attempts" in (letters["email_admin"].error or "")

    # A redelivery does not hammer the dead channels again.
    telegram.faults.reset()
    deliver(fanout, alert)
    assert telegram.messages == []


def test_routing_by_severity(
    fanout: FunctionServer, telegram: TelegramStandIn, sendgrid: SendGridStandIn
) -> None:
    deliver(fanout, make_alert(Severity.WARNING, follower_id=None))
    deliver(fanout, make_alert(Severity.INFO))
    assert chats(telegram) == [ADMIN_CHAT]  # WARNING: Telegram only; INFO: nowhere
    assert sendgrid.mails == []


def test_not_an_alert_is_acknowledged(fanout: FunctionServer, telegram: TelegramStandIn) -> None:
    response = fanout.cloud_event(b"{not json", topic="alerts")
    assert response.status_code == 200
    assert telegram.attempts() == 0
