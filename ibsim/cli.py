"""Command line: ``ibsim`` runs the paper gateway, ``ibsim ctl`` sends a fault command.

On start-up one line ``IBSIM_READY {json}`` is printed to stdout (ports, control
port, and the SIM_* clock variables) so that a parent process can wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from datetime import datetime

from spreadpilot.clock import NEW_YORK

from .control import send_command
from .sim import IBSim, SimConfig


def _listen(text: str) -> tuple[int, str, float | None]:
    """``PORT=ACCOUNT`` or ``PORT=ACCOUNT:EQUITY`` (that account's starting cash)."""
    port, _, rest = text.partition("=")
    account, _, equity = rest.partition(":")
    if not account:
        raise argparse.ArgumentTypeError(f"expected PORT=ACCOUNT[:EQUITY], got {text!r}")
    try:
        number = int(port)
        cash = float(equity) if equity else None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected PORT=ACCOUNT[:EQUITY] with numbers, got {text!r}"
        ) from exc
    if cash is not None and not (0 <= cash < float("inf")):
        raise argparse.ArgumentTypeError(f"equity must be a finite amount >= 0, got {text!r}")
    return number, account, cash


def _start(text: str) -> datetime:
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=NEW_YORK)
        except ValueError:
            continue
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=NEW_YORK)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ibsim",
        description="Paper IB Gateway: TWS API server with a simulated QQQ options market.",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (keep it loopback)")
    p.add_argument("--port", type=int, default=4002, help="port of the primary account")
    p.add_argument("--account", default="DU0000001", help="primary account id")
    p.add_argument(
        "--listen",
        type=_listen,
        action="append",
        default=[],
        metavar="PORT=ACCOUNT[:EQUITY]",
        help="serve another account on its own port, optionally with its own starting "
        "cash (repeatable; naming --account moves it to PORT)",
    )
    p.add_argument("--start", type=_start, help='simulated start, New York time "YYYY-MM-DD HH:MM"')
    p.add_argument("--speed", type=float, help="simulated seconds per wall second (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same market)")
    p.add_argument("--scenario", help="JSON/YAML scenario file (spot, vols, keypoints)")
    p.add_argument("--spot", type=float, help="opening QQQ price (overrides the scenario)")
    p.add_argument(
        "--equity",
        type=float,
        default=100_000.0,
        help="starting cash of every account without its own :EQUITY in --listen",
    )
    p.add_argument("--control-port", type=int, help="fault-injection line protocol port")
    p.add_argument("--tick-interval", type=float, default=0.1, help="wall seconds per loop step")
    p.add_argument(
        "--quote-step",
        type=int,
        default=1,
        help="simulated seconds a quote holds (60 = one-minute bars; the demo uses it to repeat)",
    )
    p.add_argument("--no-pacing", action="store_true", help="disable error 100 rate limiting")
    p.add_argument("--log-level", default=os.environ.get("IBSIM_LOG_LEVEL", "INFO"))
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    from .market import Scenario

    listen: list[tuple[int, str]] = [(args.port, args.account)]
    account_equity: dict[str, float] = {}
    for port, account, equity in args.listen:
        if account == args.account:
            listen[0] = (port, account)
        elif all(account != a for _, a in listen):
            listen.append((port, account))
        if equity is not None:
            account_equity[account] = equity
    speed = args.speed
    if speed is None:
        speed = float(os.environ.get("SIM_SPEED", "1.0"))
    scenario = Scenario.load(args.scenario) if args.scenario else Scenario()
    if args.spot is not None:
        scenario.spot = args.spot
    return SimConfig(
        host=args.host,
        listen=listen,
        start=args.start,
        speed=speed,
        seed=args.seed,
        scenario=scenario,
        equity=args.equity,
        account_equity=account_equity,
        control_port=args.control_port,
        tick_interval=args.tick_interval,
        quote_step=args.quote_step,
        pacing_limit=None if args.no_pacing else 50,
    )


async def _serve(config: SimConfig) -> None:
    sim = IBSim(config)
    await sim.start()
    ready = {"ports": sim.ports, "control_port": sim.control_port, "clock": sim.clock_env()}
    print("IBSIM_READY " + json.dumps(ready), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def ctl_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ibsim ctl", description="Send one control command.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("command", nargs="+", help="e.g. spot 470 | drop | notify 1100 | status")
    args = p.parse_args(argv)
    reply = asyncio.run(send_command(args.host, args.control_port, " ".join(args.command)))
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "ctl":
        return ctl_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = config_from_args(args)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
