"""A local Telegram Bot API stand-in: ``POST /bot<token>/sendMessage``.

Answers with the Bot API's envelope (``{"ok": true, "result": {...}}`` or
``{"ok": false, "error_code": ..., "description": ...}``, with
``parameters.retry_after`` on 429), records every request and can fail the next
N requests or every request, so the fan-out's retry and dead-letter paths run
against the same bytes the real API sends.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from spreadpilot.standins._http import (
    DeliveryStandIn,
    RecordedRequest,
    Reply,
    serve_as_process,
)

_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass(frozen=True)
class SentMessage:
    """A message the stand-in accepted."""

    token: str
    chat_id: str
    text: str
    message_id: int


def bot_error(status: int, retry_after: float | None = None) -> Reply:
    """The Bot API's error envelope for ``status``."""
    wait = int(retry_after if retry_after is not None else 1)
    body: dict[str, Any] = {
        "ok": False,
        "error_code": status,
        "description": _DESCRIPTIONS.get(status, "Error").format(retry_after=wait),
    }
    if status == 429:
        body["parameters"] = {"retry_after": wait}
    return Reply(status, body)


class TelegramStandIn(DeliveryStandIn[SentMessage]):
    """Records ``sendMessage`` calls; ``token`` (if given) must match."""

    def __init__(self, token: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.token = token
        self.route("POST", "/{bot}/sendMessage", self._send_message)
        self.route("GET", "/_admin/messages", self._admin_messages)

    @property
    def messages(self) -> list[SentMessage]:
        """Messages accepted (status 200), in order."""
        return self.delivered()

    def attempts(self) -> int:
        """sendMessage requests received, failed or not."""
        return sum(1 for r in self.requests if r.path.endswith("/sendMessage"))

    def _send_message(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        bot = params["bot"]
        if not bot.startswith("bot"):
            return Reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token = bot[3:]
        if self.token is not None and token != self.token:
            return bot_error(401)
        fault = self.faults.take()
        if fault is not None:
            return bot_error(*fault)
        try:
            payload = request.json() or {}
        except ValueError:
            return Reply(400, {"ok": False, "error_code": 400, "description": "Bad Request"})
        chat_id = payload.get("chat_id")
        text = payload.get("text")
        if chat_id in (None, ""):
            return Reply(
                400,
                {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"},
            )
        if not text:
            return Reply(
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
            )
        message = SentMessage(
            token=token, chat_id=str(chat_id), text=str(text), message_id=self._next_id()
        )
        self._accept(message)
        return Reply(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": message.message_id,
                    "from": {"id": 1, "is_bot": True, "first_name": "SpreadPilot"},
                    "chat": {"id": chat_id, "type": "private"},
                    "date": int(time.time()),
                    "text": text,
                },
            },
        )

    def _admin_messages(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        return Reply(200, [{"chat_id": m.chat_id, "text": m.text} for m in self.messages])


def main(argv: list[str] | None = None) -> None:
    """Run as a process: ``python -m spreadpilot.standins.telegram``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None)
    args = parser.parse_args(argv)
    server = TelegramStandIn(token=args.token, port=args.port)
    serve_as_process(server, "telegram")


if __name__ == "__main__":
    main()
