"""``spreadpilot followers``: manage the follower records (SPEC section 1).

Every change goes through the domain ``Follower`` validation, and errors name
the field and the reason. An unknown follower, or an invalid value, exits
with status 2. IBANs are always shown masked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from spreadpilot.cli._root import main

if TYPE_CHECKING:
    from spreadpilot.domain.followers import Follower
    from spreadpilot.storage.followers import FollowersRepository

F = TypeVar("F", bound=Callable[..., Any])

# Fields an option may leave unset (``--clear FIELD``).
CLEARABLE = ("email", "telegram_chat_id", "iban", "min_credit", "sidecar_url")


class FollowerCliError(click.ClickException):
    """A user error (unknown follower, invalid field): exit status 2."""

    exit_code = 2


def _field_options(required: bool) -> Callable[[F], F]:
    """The options shared by ``add`` and ``set`` (``set`` makes every one optional)."""
    options = [
        click.option("--name", required=required, help="Display name."),
        click.option("--account", required=required, help="IBKR account, e.g. DU1234567."),
        click.option("--gateway-host", help="Host of this follower's IB Gateway."),
        click.option("--gateway-port", type=int, help="TWS API port (4002 paper, 4001 live)."),
        click.option("--client-id", type=int, help="TWS API client id."),
        click.option("--email", help="E-mail for statements."),
        click.option("--telegram-chat-id", help="Telegram chat for the follower's alerts."),
        click.option("--iban", help="IBAN for commission statements (stored, shown masked)."),
        click.option("--qty-multiplier", type=float, help="Units traded per signal unit."),
        click.option("--max-qty-per-leg", type=int, help="Hard cap on contracts per leg."),
        click.option("--max-open-spreads", type=int, help="Most spreads open at once."),
        click.option("--min-credit", type=float, help="Overrides MIN_PRICE for this follower."),
        click.option("--commission-pct", type=float, help="Commission on positive monthly P&L."),
        click.option("--commission-currency", help="ISO currency of the commission, e.g. USD."),
        click.option("--sidecar-url", help="Sidecar serving this follower (default: SIDECAR_URL)."),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


_SIMPLE_FIELDS = (
    "name",
    "account",
    "email",
    "telegram_chat_id",
    "iban",
    "qty_multiplier",
    "max_qty_per_leg",
    "max_open_spreads",
    "min_credit",
    "commission_pct",
    "commission_currency",
    "sidecar_url",
)


@contextmanager
def _repository(ctx: click.Context) -> Iterator[FollowersRepository]:
    from spreadpilot.adapters.mongo import connect, database
    from spreadpilot.config import get_settings
    from spreadpilot.storage.followers import FollowersRepository

    settings = get_settings()
    uri = ctx.obj.get("mongo_uri") or settings.mongo_uri
    name = ctx.obj.get("mongo_db") or settings.mongo_db
    client = connect(uri)
    try:
        yield FollowersRepository(database(client, name))
    finally:
        client.close()


@contextmanager
def _user_errors() -> Iterator[None]:
    """Domain and storage errors as exit-2 messages naming the follower or field."""
    from pydantic import ValidationError
    from pymongo.errors import PyMongoError

    from spreadpilot.storage.followers import (
        FollowerExists,
        FollowerNotFound,
        InvalidFollowerUpdate,
        validation_problems,
    )

    try:
        yield
    except (FollowerNotFound, FollowerExists) as exc:
        raise FollowerCliError(str(exc)) from None
    except InvalidFollowerUpdate as exc:
        raise FollowerCliError(_problems_text(exc.problems)) from None
    except ValidationError as exc:
        raise FollowerCliError(_problems_text(validation_problems(exc))) from None
    except PyMongoError as exc:
        raise click.ClickException(f"database error: {type(exc).__name__}: {exc}") from None


def _problems_text(problems: list[tuple[str, str]]) -> str:
    return "; ".join(f"invalid {field}: {reason}" for field, reason in problems)


def _changes(values: dict[str, Any], current: Follower | None) -> dict[str, Any]:
    """Option values (None = not given) as model field changes."""
    changes = {k: values[k] for k in _SIMPLE_FIELDS if values.get(k) is not None}
    gateway = {
        key: values[opt]
        for key, opt in (
            ("host", "gateway_host"),
            ("port", "gateway_port"),
            ("client_id", "client_id"),
        )
        if values.get(opt) is not None
    }
    if gateway:
        base = current.gateway.model_dump() if current is not None else {}
        changes["gateway"] = {**base, **gateway}
    return changes


def _public(follower: Follower) -> dict[str, Any]:
    """The record as shown to people: IBAN masked."""
    data: dict[str, Any] = follower.model_dump(mode="json")
    data["iban"] = follower.masked_iban
    return data


def _echo_follower(follower: Follower, as_json: bool) -> None:
    data = _public(follower)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    gateway = data.pop("gateway")
    data["gateway"] = f"{gateway['host']}:{gateway['port']} (client id {gateway['client_id']})"
    width = max(len(k) for k in data)
    for key in sorted(data):
        value = data[key]
        click.echo(f"{key:<{width}}  {'-' if value is None else value}")


@main.group()
@click.option("--mongo-uri", metavar="URI", default=None, help="MongoDB URI (default: MONGO_URI).")
@click.option("--mongo-db", metavar="NAME", default=None, help="Database (default: MONGO_DB).")
@click.pass_context
def followers(ctx: click.Context, mongo_uri: str | None, mongo_db: str | None) -> None:
    """Add, inspect and change followers (the accounts that copy the strategy)."""
    ctx.ensure_object(dict)
    ctx.obj["mongo_uri"] = mongo_uri
    ctx.obj["mongo_db"] = mongo_db


@followers.command("add")
@click.argument("follower_id")
@_field_options(required=True)
@click.option("--disabled", is_flag=True, help="Create it disabled (no trading until enabled).")
@click.pass_context
def add(ctx: click.Context, /, follower_id: str, disabled: bool, **values: Any) -> None:
    """Create follower FOLLOWER_ID (a slug such as follower123)."""
    from spreadpilot.config import get_settings
    from spreadpilot.domain.followers import Follower, FollowerState

    settings = get_settings()
    values.setdefault("gateway_host", None)
    values["gateway_host"] = values["gateway_host"] or settings.ib_gateway_host
    if values.get("gateway_port") is None:
        values["gateway_port"] = settings.ib_gateway_port
    if values.get("client_id") is None:
        values["client_id"] = settings.ib_client_id
    record = _changes(values, None)
    record["_id"] = follower_id
    if disabled:
        record["enabled"] = False
        record["state"] = FollowerState.DISABLED
    with _user_errors():
        follower = Follower.model_validate(record)
        with _repository(ctx) as repo:
            repo.add(follower)
    click.echo(f"added follower {follower.id}")
    _echo_follower(follower, as_json=False)


@followers.command("list")
@click.option("--enabled-only", is_flag=True, help="Only followers that may trade.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, enabled_only: bool, as_json: bool) -> None:
    """List followers."""
    with _user_errors(), _repository(ctx) as repo:
        found = repo.list_enabled() if enabled_only else repo.list_all()
    if as_json:
        click.echo(json.dumps([_public(f) for f in found], indent=2, sort_keys=True))
        return
    if not found:
        click.echo("no followers")
        return
    click.echo(
        f"{'id':<20} {'enabled':<7} {'state':<19} {'account':<12} {'gateway':<22} "
        f"{'qty x':>6} {'max':>4} {'comm%':>6}  iban"
    )
    for f in found:
        gateway = f"{f.gateway.host}:{f.gateway.port}/{f.gateway.client_id}"
        click.echo(
            f"{f.id:<20} {'yes' if f.enabled else 'no':<7} {f.state.value:<19} {f.account:<12} "
            f"{gateway:<22} {f.qty_multiplier:>6g} {f.max_qty_per_leg:>4} "
            f"{f.commission_pct:>6g}  {f.masked_iban or '-'}"
        )


@followers.command("show")
@click.argument("follower_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, follower_id: str, as_json: bool) -> None:
    """Show one follower."""
    with _user_errors(), _repository(ctx) as repo:
        follower = repo.require(follower_id)
    _echo_follower(follower, as_json)


@followers.command("enable")
@click.argument("follower_id")
@click.pass_context
def enable(ctx: click.Context, follower_id: str) -> None:
    """Let FOLLOWER_ID trade again (a DISABLED state becomes ACTIVE)."""
    with _user_errors(), _repository(ctx) as repo:
        follower = repo.set_enabled(follower_id, True)
    click.echo(f"enabled {follower.id} (state {follower.state.value})")


@followers.command("disable")
@click.argument("follower_id")
@click.pass_context
def disable(ctx: click.Context, follower_id: str) -> None:
    """Stop FOLLOWER_ID from opening new trades."""
    with _user_errors(), _repository(ctx) as repo:
        follower = repo.set_enabled(follower_id, False)
    click.echo(f"disabled {follower.id} (state {follower.state.value})")


@followers.command("set")
@click.argument("follower_id")
@_field_options(required=False)
@click.option(
    "--state",
    type=click.Choice(
        ["ACTIVE", "DISABLED", "MANUAL_INTERVENTION", "HALTED"], case_sensitive=False
    ),
    help="Set the state (e.g. clear MANUAL_INTERVENTION back to ACTIVE).",
)
@click.option(
    "--clear",
    "clear",
    multiple=True,
    type=click.Choice(CLEARABLE),
    help="Unset an optional field (repeatable).",
)
@click.pass_context
def set_(
    ctx: click.Context,
    /,
    follower_id: str,
    state: str | None,
    clear: tuple[str, ...],
    **values: Any,
) -> None:
    """Change fields of FOLLOWER_ID; the whole record is re-validated."""
    with _user_errors(), _repository(ctx) as repo:
        current = repo.require(follower_id)
        changes = _changes(values, current)
        for field in clear:
            if field in changes:
                raise FollowerCliError(f"invalid {field}: both set and cleared")
            changes[field] = None
        if state is not None:
            changes["state"] = state.upper()
        if not changes:
            raise FollowerCliError("nothing to change: give at least one option")
        follower = repo.update(follower_id, changes)
    click.echo(f"updated {follower.id}: {', '.join(sorted(changes))}")
    _echo_follower(follower, as_json=False)
