"""Bearer authentication for every route but /health.

Two kinds of token are accepted:

* the static token (SIDECAR_TOKEN, from the environment or Secret Manager),
  compared in constant time so its value cannot be probed byte by byte;
* a Google-signed ID token whose e-mail is one of the allowed service
  accounts (the functions' identity) and whose audience is the sidecar.

Tokens are never logged, echoed in errors, or stored beyond the request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="Static token or Google ID token")

IdTokenVerifier = Callable[[str], dict[str, Any]]


def google_verifier(audience: str) -> IdTokenVerifier:
    """Verify a Google-signed ID token for ``audience`` (network: Google's certs)."""

    def verify(token: str) -> dict[str, Any]:
        from google.auth.transport import requests as google_requests
        from google.oauth2 import id_token

        claims: dict[str, Any] = id_token.verify_oauth2_token(  # type: ignore[no-untyped-call]
            token, google_requests.Request(), audience
        )
        return claims

    return verify


class Authenticator:
    """The FastAPI dependency (an instance is callable)."""

    def __init__(
        self,
        static_token: str | None,
        *,
        service_accounts: frozenset[str] = frozenset(),
        verifier: IdTokenVerifier | None = None,
    ) -> None:
        self._static = static_token.encode() if static_token else None
        self._accounts = service_accounts
        self._verifier = verifier

    async def __call__(
        self, request: Request, credentials: HTTPAuthorizationCredentials | None = None
    ) -> str:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized()
        token = credentials.credentials
        if self._static is not None and hmac.compare_digest(token.encode(), self._static):
            return "static"
        if self._verifier is not None and self._accounts and token.count(".") == 2:
            try:
                claims = await asyncio.to_thread(self._verifier, token)
            except Exception as exc:
                log.info("ID token refused", extra={"reason": type(exc).__name__})
                raise _unauthorized() from None
            email = str(claims.get("email", "")).lower()
            if claims.get("email_verified", True) and email in self._accounts:
                return email
        raise _unauthorized()


def _unauthorized() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def dependency(auth: Authenticator) -> Callable[..., Awaitable[str]]:
    """Wrap the authenticator so FastAPI documents the bearer scheme in OpenAPI."""
    from fastapi import Depends

    async def require(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> str:
        return await auth(request, credentials)

    return require
