"""A local SendGrid v3 stand-in: ``POST /v3/mail/send``.

Validates the request the way SendGrid does where it matters to us (bearer API
key, personalizations with recipients, from, subject, content), answers 202 with
an ``X-Message-Id`` header, and SendGrid's ``{"errors": [...]}`` body on
failure. Records requests and can fail the next N or every request.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from spreadpilot.standins._http import (
    DeliveryStandIn,
    RecordedRequest,
    Reply,
    serve_as_process,
)

_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    413: "too big",
    429: "too many requests",
    500: "internal server error",
    503: "service unavailable",
}


@dataclass(frozen=True)
class SentMail:
    """A mail the stand-in accepted."""

    message_id: str
    to: tuple[str, ...]
    sender: str
    subject: str
    text: str
    body: dict[str, Any]


def sendgrid_error(status: int, message: str | None = None, field: str | None = None) -> Reply:
    return Reply(
        status,
        {
            "errors": [
                {"message": message or _MESSAGES.get(status, "error"), "field": field, "help": None}
            ]
        },
    )


class SendGridStandIn(DeliveryStandIn[SentMail]):
    """Records mail sends; ``api_key`` (if given) must match the bearer token."""

    def __init__(self, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.api_key = api_key
        self.route("POST", "/v3/mail/send", self._send)
        self.route("GET", "/_admin/mails", self._admin_mails)

    @property
    def mails(self) -> list[SentMail]:
        """Mails accepted (status 202), in order."""
        return self.delivered()

    def attempts(self) -> int:
        return sum(1 for r in self.requests if r.path == "/v3/mail/send")

    def _send(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (
            self.api_key is not None and auth[len("Bearer ") :] != self.api_key
        ):
            return sendgrid_error(401)
        fault = self.faults.take()
        if fault is not None:
            return sendgrid_error(fault[0])
        try:
            payload = request.json() or {}
        except ValueError:
            return sendgrid_error(400, "Invalid JSON")
        personalizations = payload.get("personalizations") or []
        recipients = tuple(
            str(to.get("email"))
            for p in personalizations
            for to in (p.get("to") or [])
            if isinstance(to, dict) and to.get("email")
        )
        if not recipients:
            return sendgrid_error(
                400, "The personalizations field is required.", "personalizations"
            )
        sender = (payload.get("from") or {}).get("email")
        if not sender:
            return sendgrid_error(400, "The from email is required.", "from.email")
        subject = payload.get("subject") or next(
            (p.get("subject") for p in personalizations if p.get("subject")), None
        )
        if not subject:
            return sendgrid_error(400, "The subject is required.", "subject")
        content = payload.get("content") or []
        if not content or not all(c.get("type") and c.get("value") for c in content):
            return sendgrid_error(400, "The content value must be a string.", "content")
        mail = SentMail(
            message_id=f"standin-{self._next_id()}",
            to=recipients,
            sender=str(sender),
            subject=str(subject),
            text=str(content[0]["value"]),
            body=payload,
        )
        self._accept(mail)
        return Reply(202, None, {"X-Message-Id": mail.message_id})

    def _admin_mails(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        return Reply(
            200, [{"to": list(m.to), "subject": m.subject, "text": m.text} for m in self.mails]
        )


def main(argv: list[str] | None = None) -> None:
    """Run as a process: ``python -m spreadpilot.standins.sendgrid``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    server = SendGridStandIn(api_key=args.api_key, port=args.port)
    serve_as_process(server, "sendgrid")


if __name__ == "__main__":
    main()
