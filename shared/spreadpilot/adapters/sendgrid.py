"""SendGrid v3 mail-send client over httpx (``POST /v3/mail/send``).

SendGrid answers 202 with an empty body on success and ``{"errors": [...]}``
otherwise. 429 and 5xx are transient; other 4xx (bad key, bad request) are
permanent. The API key travels only in the Authorization header and never
appears in errors.
"""

from __future__ import annotations

import httpx

from spreadpilot.adapters.telegram import DeliveryError, is_permanent_status

SENDGRID_API = "https://api.sendgrid.com"


class SendGridClient:
    """Sends plain-text mail from one verified sender."""

    def __init__(
        self,
        api_key: str,
        sender: str,
        *,
        base_url: str = SENDGRID_API,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a SendGrid API key is required")
        self._api_key = api_key
        self._sender = sender
        self._base_url = base_url.rstrip("/")
        self._http = http if http is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def send(self, to: str, subject: str, text: str) -> str | None:
        """Send one mail; returns SendGrid's X-Message-Id when it gives one."""
        body = {
            "personalizations": [{"to": [{"email": to}]}],
            "from": {"email": self._sender},
            "subject": subject[:200],
            "content": [{"type": "text/plain", "value": text}],
        }
        try:
            response = self._http.post(
                f"{self._base_url}/v3/mail/send",
                json=body,
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"sendgrid unreachable: {type(exc).__name__}", permanent=False
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            message_id = response.headers.get("X-Message-Id")
            return str(message_id) if message_id is not None else None
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(str(e.get("message", "")) for e in errors)[:200]
        except ValueError:
            detail = ""
        retry_after = response.headers.get("Retry-After")
        raise DeliveryError(
            f"sendgrid {status}: {detail or 'no detail'}",
            permanent=is_permanent_status(status),
            status=status,
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
