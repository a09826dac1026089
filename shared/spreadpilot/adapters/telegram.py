"""Telegram Bot API client (``sendMessage``) over httpx.

Kept deliberately small: one call, and a precise classification of failures,
because the fan-out's behaviour depends on it. 429 and 5xx (and network
errors) are worth retrying; 400/401/403/404 (chat not found, bad token, bot
blocked) never succeed on retry and go straight to the dead letter. The bot
token lives in the URL path, so no URL or raw httpx error is ever put into an
exception message or a log line.
"""

from __future__ import annotations

import httpx

TELEGRAM_API = "https://api.telegram.org"
# Bot API limit on message text; longer alerts are cut rather than rejected.
MAX_TEXT = 4096


class DeliveryError(Exception):
    """A channel refused or failed to take a message.

    ``permanent`` means retrying cannot help (dead-letter it now);
    ``retry_after`` is the server's requested wait in seconds, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after


def is_permanent_status(status: int) -> bool:
    """4xx other than 408 (timeout) and 429 (rate limit) cannot succeed on retry."""
    return 400 <= status < 500 and status not in (408, 429)


class TelegramClient:
    """Sends text messages as one bot."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = TELEGRAM_API,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        if not token:
            raise ValueError("a Telegram bot token is required")
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._http = http if http is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def send_message(self, chat_id: str | int, text: str) -> int:
        """Send ``text`` to ``chat_id``; returns Telegram's message id."""
        url = f"{self._base_url}/bot{self._token}/sendMessage"
        body = {
            "chat_id": chat_id,
            "text": text[:MAX_TEXT],
            "disable_web_page_preview": True,
        }
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"telegram unreachable: {type(exc).__name__}", permanent=False
            ) from None
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code == 200 and payload.get("ok"):
            return int(payload.get("result", {}).get("message_id", 0))
        status = response.status_code
        description = str(payload.get("description", "no description"))[:200]
        retry_after = (payload.get("parameters") or {}).get("retry_after")
        raise DeliveryError(
            f"telegram {status}: {description}",
            permanent=is_permanent_status(status) if status != 200 else True,
            status=status,
            retry_after=float(retry_after) if retry_after is not None else None,
        )
