"""The real local services SpreadPilot runs against outside Google Cloud.

PostgreSQL (P&L store), Redis (alerts stream, locks), FerretDB (the MongoDB
wire protocol, for followers and executions) and Google's Pub/Sub fake, each
started by the project itself on 127.0.0.1 with state under ``.devstack/``.
Tests and the CLI use the same entry points so a developer's shell and a test
run always agree on ports and credentials::

    from spreadpilot.devstack import ensure_services
    env = ensure_services()          # idempotent; fast when already running
    env.environ()["PNL_DATABASE_URL"]

Go-built tools that only some tests need (OpenBao, OpenTofu) come from the
same build routine, on demand and never from ``services up``::

    from spreadpilot.devstack import ensure_binary
    tofu = ensure_binary("tofu")     # .devstack/bin/tofu; cached per user
"""

from spreadpilot.devstack.install import GO_BINARIES, ensure_binary
from spreadpilot.devstack.paths import (
    BIN_CACHE_ENV,
    DEVSTACK_DIR_ENV,
    DevstackError,
    Layout,
    bin_cache_dir,
    layout,
)
from spreadpilot.devstack.services import (
    HOST,
    MONGO_DATABASE,
    PG_DATABASE,
    PG_PASSWORD,
    PG_USER,
    PORT_VARIABLES,
    PUBSUB_PROJECT_ID,
    SERVICE_NAMES,
    ServiceEnv,
    ServiceStatus,
    configured_port,
    ensure_services,
    install_services,
    service_env,
    services_status,
    stop_services,
)

__all__ = [
    "BIN_CACHE_ENV",
    "DEVSTACK_DIR_ENV",
    "GO_BINARIES",
    "HOST",
    "MONGO_DATABASE",
    "PG_DATABASE",
    "PG_PASSWORD",
    "PG_USER",
    "PORT_VARIABLES",
    "PUBSUB_PROJECT_ID",
    "SERVICE_NAMES",
    "DevstackError",
    "Layout",
    "ServiceEnv",
    "ServiceStatus",
    "bin_cache_dir",
    "configured_port",
    "ensure_binary",
    "ensure_services",
    "install_services",
    "layout",
    "service_env",
    "services_status",
    "stop_services",
]
