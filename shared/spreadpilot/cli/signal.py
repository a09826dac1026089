"""``spreadpilot signal publish``: a manual signal onto Pub/Sub ``signals``.

The body is validated by the same domain rules as the sheet and the sidecar
(``manual_signal``) before anything is sent, so a typo is an error here, not a
SIGNAL_INVALID at 09:31. The message is what ``dispatch_signal`` consumes: the
signal's JSON, with its id (and the target follower, if one) as attributes.
"""

from __future__ import annotations

import json
import sys
from datetime import date

import click

from spreadpilot.cli._root import main


@main.group()
def signal() -> None:
    """Manual trading signals."""


@signal.command("publish")
@click.option(
    "--strategy",
    required=True,
    type=click.Choice(
        ["vertical_spread", "bull_put", "bear_call", "Long", "Short"], case_sensitive=False
    ),
)
@click.option("--qty-per-leg", required=True, type=int)
@click.option("--strike-long", required=True, type=float)
@click.option("--strike-short", required=True, type=float)
@click.option("--follower", "follower_id", default=None, help="Only this follower (default: all).")
@click.option("--expiry", default=None, help="YYYY-MM-DD (default: today, 0DTE).")
@click.option("--signal-id", default=None, help="Default: derived from the trade (idempotent).")
@click.option("--topic", default="signals", show_default=True)
@click.option("--project", default=None, help="Default: PUBSUB_PROJECT_ID.")
@click.option("--dry-run", is_flag=True, help="Validate and print the message; send nothing.")
def publish(
    strategy: str,
    qty_per_leg: int,
    strike_long: float,
    strike_short: float,
    follower_id: str | None,
    expiry: str | None,
    signal_id: str | None,
    topic: str,
    project: str | None,
    dry_run: bool,
) -> None:
    """Validate a manual signal and publish it for every (or one) follower."""
    import os

    from spreadpilot.clock import clock_from_env, now_new_york
    from spreadpilot.config import get_settings
    from spreadpilot.domain.signals import InvalidSignal, manual_signal

    settings = get_settings()
    body: dict[str, object] = {
        "strategy": strategy,
        "qty_per_leg": qty_per_leg,
        "strike_long": strike_long,
        "strike_short": strike_short,
    }
    if expiry:
        body["expiry"] = expiry
    if signal_id:
        body["signal_id"] = signal_id
    today: date = now_new_york(clock_from_env(dict(os.environ))).date()
    try:
        sig = manual_signal(body, today=today, limits=settings.signal_limits())
    except InvalidSignal as exc:
        click.echo(f"error: invalid signal: {exc.reason}", err=True)
        sys.exit(2)
    attributes = {"signal_id": sig.signal_id, "source": sig.source}
    if follower_id:
        attributes["follower_id"] = follower_id
    if dry_run:
        click.echo(json.dumps({"data": json.loads(sig.to_json()), "attributes": attributes}))
        return

    from spreadpilot.adapters.pubsub import PublishError, PubSubPublisher

    publisher = PubSubPublisher(project or settings.pubsub_project_id, timeout=15.0)
    try:
        message_id = publisher.publish(topic, sig.to_json().encode("utf-8"), attributes)
    except PublishError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        publisher.close()
    target = follower_id or "every enabled follower"
    click.echo(f"published signal {sig.signal_id} for {target} (message {message_id})")
