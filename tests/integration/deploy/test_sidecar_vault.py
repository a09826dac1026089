"""The sidecar with SECRETS_BACKEND=vault, against the real OpenBao dev server.

The deploy tests' ``bao`` fixture (conftest.py here) provides the server. The
sidecar app is started with settings whose environment values for the secrets
are decoys: the API token, the MongoDB URI and the P&L database URL exist only
in Vault, under a token whose policy grants exactly those three paths (the
Vault counterpart of the sidecar's Secret Manager grants). The token from
Vault is the one that authenticates, the decoy is refused, and the kill
switch persists its modes through the MongoDB URI that came from Vault.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openbao_server import Bao
from spreadpilot.adapters.redis import connect as redis_connect
from spreadpilot.alerting import AlertPublisher, RedisStreamSink
from spreadpilot.config import Settings

from sidecar.app import SidecarDeps, create_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SIDECAR_PATHS = ("sidecar-token", "mongo-uri", "pnl-database-url")


def _put(bao: Bao, prefix: str, secret_id: str, value: str) -> None:
    with bao.client() as http:
        response = http.post(
            f"/v1/secret/data/{prefix}/{secret_id}", json={"data": {"value": value}}
        )
        assert response.status_code in (200, 204), response.text


def _scoped_token(bao: Bao, prefix: str) -> str:
    """A token that may read the sidecar's three secrets and nothing else."""
    policy = "\n".join(
        f'path "secret/data/{prefix}/{p}" {{ capabilities = ["read"] }}' for p in SIDECAR_PATHS
    )
    name = f"sidecar-{prefix}"
    with bao.client() as http:
        assert http.put(f"/v1/sys/policies/acl/{name}", json={"policy": policy}).is_success
        created = http.post("/v1/auth/token/create", json={"policies": [name]})
        assert created.is_success, created.text
        return str(created.json()["auth"]["client_token"])


def test_the_sidecar_authenticates_with_the_token_from_vault(
    bao: Bao,
    devstack: Any,
    mongo_db: Any,
    pg_dsn: str,
    redis_key: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"sidecar-it-{secrets.token_hex(4)}"
    vault_token_value = f"vault-api-token-{secrets.token_hex(8)}"
    _put(bao, prefix, "sidecar-token", vault_token_value)
    _put(bao, prefix, "mongo-uri", devstack.mongo_uri)
    _put(bao, prefix, "pnl-database-url", pg_dsn)
    monkeypatch.setenv("VAULT_PATH_PREFIX", prefix)
    decoy = "env-token-must-not-authenticate"
    settings = Settings(
        secrets_backend="vault",
        vault_addr=bao.addr,
        vault_token=_scoped_token(bao, prefix),
        vault_mount_point="secret",
        # Decoys: if any of these were used, the assertions below would fail.
        sidecar_token=decoy,
        mongo_uri="mongodb://127.0.0.1:9/",
        pnl_database_url="postgresql://nobody@127.0.0.1:9/none",
        mongo_db=mongo_db.name,
        redis_url=devstack.redis_url,
        sidecar_mongo_timeout_ms=1500,
    )
    publisher = AlertPublisher(
        [RedisStreamSink(redis_connect(devstack.redis_url, timeout=1.0), stream=redis_key("a"))]
    )
    app = create_app(settings, SidecarDeps(publisher=publisher, configure_logs=False))

    with TestClient(app) as client:
        resolved = app.state.runtime.settings
        assert resolved.mongo_uri == devstack.mongo_uri
        assert resolved.pnl_database_url == pg_dsn
        assert vault_token_value not in repr(resolved)

        def get(token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return client.get("/status", headers=headers).status_code

        assert get(vault_token_value) == 200
        assert get(decoy) == 401
        assert get(None) == 401

        # The kill switch persists through MongoDB at the URI from Vault.
        halted = client.post(
            "/halt",
            json={"mode": "reduce_only", "reason": "vault test"},
            headers={"Authorization": f"Bearer {vault_token_value}"},
        )
        assert halted.status_code == 200, halted.text

        def persisted() -> Any:
            return mongo_db["kill_switch"].find_one({"_id": "modes"})

        deadline = time.monotonic() + 10
        while persisted() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        doc = persisted()
        assert doc is not None and doc["global"] == "REDUCE_ONLY"
