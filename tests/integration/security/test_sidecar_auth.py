"""Every sidecar route but /health refuses a missing, wrong or expired token.

The sidecar runs for real (uvicorn on a loopback port, its real lifespan on
the local stores) with both kinds of credential enabled: the static token and
Google ID tokens from an allowed service account. The ID tokens are real
RS256 JWTs signed with a key made here; the sidecar's verifier is google-auth's
own ``id_token.verify_token`` (signature, ``exp``/``iat``, audience) plus the
Google issuer check that ``verify_oauth2_token`` adds, reading its certificates
from a local HTTP server instead of Google's. That is the one substitution:
``sidecar.auth.google_verifier`` hard-codes Google's certificate URL, so the
test injects an equivalent verifier through ``SidecarDeps.id_token_verifier``
(the sidecar's own ``Authenticator`` and routing are untouched).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sidecar"))

from sidecar_harness import SidecarServer, free_port, make_clock

TOKEN = "static-token-for-the-auth-tests-0123456789"
ACCOUNT = "functions@spreadpilot-test.iam.gserviceaccount.com"
KID = "local-test-key"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


def _keypair() -> tuple[bytes, bytes]:
    """An RSA private key and a self-signed certificate for it (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spreadpilot-test-signer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, cert.public_bytes(serialization.Encoding.PEM)


class CertServer:
    """Serves ``{kid: certificate}`` the way Google's v1 certs endpoint does."""

    def __init__(self, certs: dict[str, str]) -> None:
        body = json.dumps(certs).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v1/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def local_google_verifier(audience: str, certs_url: str) -> Callable[[str], dict[str, Any]]:
    """What ``verify_oauth2_token`` does, with the certificates read from ``certs_url``."""

    def verify(token: str) -> dict[str, Any]:
        from google.auth import exceptions
        from google.auth.transport import requests as google_requests
        from google.oauth2 import id_token

        claims = dict(
            id_token.verify_token(  # type: ignore[no-untyped-call]
                token, google_requests.Request(), audience=audience, certs_url=certs_url
            )
        )
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise exceptions.GoogleAuthError("wrong issuer")
        return claims

    return verify


@pytest.fixture(scope="module")
def signing() -> Iterator[dict[str, Any]]:
    private, cert = _keypair()
    stranger_private, _ = _keypair()
    server = CertServer({KID: cert.decode()})
    yield {"private": private, "stranger": stranger_private, "certs_url": server.url}
    server.stop()


def id_token_for(
    private_pem: bytes,
    audience: str,
    *,
    email: str = ACCOUNT,
    issued: datetime | None = None,
    lifetime: timedelta = timedelta(hours=1),
    issuer: str = "https://accounts.google.com",
) -> str:
    """An RS256 JWT shaped like a Google-signed ID token for a service account."""
    from google.auth import crypt, jwt

    issued = issued or datetime.now(UTC)
    signer = crypt.RSASigner.from_string(private_pem, key_id=KID)
    payload = {
        "iss": issuer,
        "aud": audience,
        "sub": "1234567890",
        "azp": "1234567890",
        "email": email,
        "email_verified": True,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    return jwt.encode(signer, payload).decode()  # type: ignore[no-untyped-call]


@pytest.fixture
def sidecar(devstack: Any, mongo_db: Any, pg_dsn: str, signing: dict[str, Any]) -> Iterator[Any]:
    from spreadpilot.config import Settings

    from sidecar.app import SidecarDeps, create_app

    port = free_port()
    audience = f"http://127.0.0.1:{port}"
    settings = Settings(
        mongo_uri=devstack.mongo_uri,
        mongo_db=mongo_db.name,
        redis_url=devstack.redis_url,
        pnl_database_url=pg_dsn,
        sidecar_token=TOKEN,
        sidecar_allowed_service_accounts=ACCOUNT,
        sidecar_auth_audience=audience,
        sidecar_mongo_timeout_ms=1500,
    )
    deps = SidecarDeps(
        clock=make_clock(),
        id_token_verifier=local_google_verifier(audience, signing["certs_url"]),
        configure_logs=False,
    )
    server = SidecarServer(create_app(settings, deps), port).start()
    server.audience = audience  # type: ignore[attr-defined]
    yield server
    server.stop()


def protected_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route in the OpenAPI schema but /health, parameters filled in.

    Read from the schema rather than ``app.routes`` (included routers are nested
    there): every route the sidecar documents is checked.
    """
    import re

    out = []
    for path, operations in app.openapi()["paths"].items():
        if path == "/health":
            continue
        concrete = re.sub(r"\{[^}]+\}", "f1", path)
        for method in operations:
            if method in ("get", "post", "put", "patch", "delete"):
                out.append((method.upper(), concrete))
    return sorted(out)


def _call(url: str, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, url + path, headers=headers, json={}, timeout=10)


def test_every_protected_route_refuses_missing_wrong_and_expired_tokens(
    sidecar: Any, signing: dict[str, Any]
) -> None:
    routes = protected_routes(sidecar.app)
    paths = {p for _, p in routes}
    # The documented API is all here (a route missing from the list would go unchecked).
    assert {
        "/status",
        "/trade/signal",
        "/executions/f1",
        "/positions",
        "/positions/f1",
        "/liquidate",
        "/flatten",
        "/close/all",
        "/close/f1",
        "/halt",
        "/resume",
        "/metrics",
    } <= paths
    audience = sidecar.audience
    expired = id_token_for(
        signing["private"], audience, issued=datetime.now(UTC) - timedelta(hours=2)
    )
    refused = {
        "missing": {},
        "bearer, no token": {"Authorization": "Bearer"},
        "wrong static": {"Authorization": f"Bearer {TOKEN}x"},
        "static, wrong scheme": {"Authorization": f"Basic {TOKEN}"},
        "expired ID token": {"Authorization": f"Bearer {expired}"},
        "ID token, other audience": {
            "Authorization": f"Bearer {id_token_for(signing['private'], 'https://elsewhere')}"
        },
        "ID token, other account": {
            "Authorization": "Bearer "
            + id_token_for(signing["private"], audience, email="intruder@example.com")
        },
        "ID token, untrusted key": {
            "Authorization": f"Bearer {id_token_for(signing['stranger'], audience)}"
        },
        "ID token, not Google's issuer": {
            "Authorization": "Bearer "
            + id_token_for(signing["private"], audience, issuer="https://evil.example")
        },
    }
    failures = []
    for method, path in routes:
        for label, headers in refused.items():
            reply = _call(sidecar.url, method, path, headers)
            if reply.status_code != 401:
                failures.append(f"{method} {path} with {label}: {reply.status_code}")
            elif TOKEN in reply.text or "Bearer ey" in reply.text:
                failures.append(f"{method} {path} with {label}: echoes the credential")
    assert not failures, "\n".join(failures)


def test_the_same_routes_accept_a_valid_static_or_id_token(
    sidecar: Any, signing: dict[str, Any]
) -> None:
    """The refusals above are the tokens' fault: valid ones get through on every route."""
    fresh = id_token_for(signing["private"], sidecar.audience)
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {fresh}"}):
        for method, path in protected_routes(sidecar.app):
            reply = _call(sidecar.url, method, path, headers)
            assert reply.status_code != 401, (method, path, reply.text)


def test_health_needs_no_token(sidecar: Any) -> None:
    assert httpx.get(f"{sidecar.url}/health", timeout=10).status_code == 200


def test_expiry_is_enforced_to_the_second(sidecar: Any, signing: dict[str, Any]) -> None:
    """A token that expired a few seconds ago is refused; one valid a minute more is not."""
    now = datetime.now(UTC)
    key, audience = signing["private"], sidecar.audience
    ten_minutes = timedelta(minutes=10)
    just_expired = id_token_for(
        key, audience, issued=now - ten_minutes, lifetime=ten_minutes - timedelta(seconds=5)
    )
    still_valid = id_token_for(
        key, audience, issued=now - timedelta(seconds=5), lifetime=timedelta(minutes=1)
    )
    url = f"{sidecar.url}/status"
    assert httpx.get(url, headers={"Authorization": f"Bearer {just_expired}"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {still_valid}"}).status_code == 200


def test_openapi_and_docs_need_a_token(sidecar: Any) -> None:
    """The schema maps every route: only a caller with a token may read it."""
    assert httpx.get(f"{sidecar.url}/openapi.json", timeout=10).status_code == 401
    for path in ("/docs", "/redoc"):
        # Not served at all: the interactive pages would fetch the schema openly.
        assert httpx.get(f"{sidecar.url}{path}", timeout=10).status_code in (401, 404), path
