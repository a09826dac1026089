"""Fault injection: a Python API and a line protocol on a local control port.

Tests call ``sim.control`` directly; the demo and other processes send one
command per line to the control port (127.0.0.1 only) and get one JSON line
back, e.g. ``printf 'spot 470\\n' | nc 127.0.0.1 7497``.

Commands: ``drop [PORT]``, ``refuse SECONDS [PORT]``, ``reject N``, ``rejectmod N``,
``delay SECONDS``, ``delaypos SECONDS [PORT]``, ``pause``, ``resume``, ``spot PRICE``,
``shift DELTA``, ``notify 1100|1101|1102``, ``status``, ``help``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from spreadpilot.clock import NEW_YORK

if TYPE_CHECKING:
    from .server import Gateway
    from .sim import IBSim

log = logging.getLogger("ibsim.control")


class Control:
    """Every fault the simulator can inject, and a status report."""

    def __init__(self, sim: IBSim) -> None:
        self.sim = sim

    def _gateways(self, port: int | None) -> list[Gateway]:
        return [g for g in self.sim.gateways if port is None or g.port == port]

    def drop_connections(self, port: int | None = None) -> int:
        """Close every client socket (on one port or all): clients see a disconnect."""
        dropped: int = sum(g.drop_connections() for g in self._gateways(port))
        log.warning("fault: dropped %d connections", dropped)
        return dropped

    def refuse_connections(self, seconds: float, port: int | None = None) -> None:
        """Stop listening for ``seconds`` of wall time: connects are refused meanwhile."""
        for gateway in self._gateways(port):
            gateway.refuse(seconds)
        log.warning("fault: refusing connections for %.1fs", seconds)

    def reject_next_orders(self, count: int) -> None:
        """The next ``count`` new orders are rejected with error 201."""
        self.sim.broker.reject_next = count
        log.warning("fault: rejecting the next %d orders", count)

    def reject_next_modifications(self, count: int) -> None:
        """The next ``count`` modifications of live orders are rejected with error 201.

        The order itself keeps working at its previous price, as at IB; new
        orders are not affected (that is ``reject_next_orders``).
        """
        self.sim.broker.reject_next_modifications = count
        log.warning("fault: rejecting the next %d order modifications", count)

    def delay_acks(self, seconds: float) -> None:
        """Hold placeOrder/cancelOrder handling for ``seconds`` (0 to stop).

        The connection's later requests queue behind the held one, as they do
        behind a slow gateway.
        """
        self.sim.ack_delay = max(0.0, seconds)
        log.warning("fault: acknowledgement delay %.2fs", seconds)

    def delay_positions(self, seconds: float, port: int | None = None) -> None:
        """Hold the answer to reqPositions (the full list and positionEnd) ``seconds`` (0 to stop).

        The subscription starts at once and streamed position updates (after
        fills) keep flowing meanwhile, so they reach the client between its
        request and the answer, as from a busy gateway. Only requests made
        while the delay is set are held.
        """
        for gateway in self._gateways(port):
            gateway.positions_delay = max(0.0, seconds)
        log.warning("fault: positions answer delay %.2fs", seconds)

    def pause_fills(self) -> None:
        """Orders keep working but nothing fills until ``resume_fills``."""
        self.sim.broker.fills_paused = True
        log.warning("fault: fills paused")

    def resume_fills(self) -> None:
        self.sim.broker.fills_paused = False
        log.warning("fault: fills resumed")

    def set_spot(self, price: float) -> None:
        """Jump QQQ to ``price`` now; quotes and greeks follow at the next tick."""
        self.sim.market.set_spot(price)
        log.warning("fault: QQQ spot set to %.2f", price)
        self.sim.step()

    def shift_spot(self, delta: float) -> None:
        self.sim.market.shift(delta)
        log.warning("fault: QQQ spot shifted by %+.2f", delta)
        self.sim.step()

    def notify(self, code: int) -> None:
        """Send connectivity notice 1100 (lost), 1101 (restored, data lost) or 1102."""
        if code not in (1100, 1101, 1102):
            raise ValueError(f"unsupported notice {code}")
        self.sim.connectivity_lost = code == 1100
        for gateway in self.sim.gateways:
            gateway.notify(code)
        log.warning("fault: sent notice %d", code)

    def status(self) -> dict[str, Any]:
        sim = self.sim
        return {
            "time": sim.clock.now().astimezone(NEW_YORK).isoformat(timespec="seconds"),
            "spot": round(sim.market.spot(), 4),
            "gateways": [
                {
                    "account": g.account,
                    "port": g.port,
                    "clients": sorted(g.connections),
                    "messages_in": g.messages_in,
                    "messages_out": g.messages_out,
                    "positions_delay": g.positions_delay,
                }
                for g in sim.gateways
            ],
            "live_orders": sum(1 for o in sim.broker.orders.values() if o.is_live),
            "reject_next": sim.broker.reject_next,
            "reject_next_modifications": sim.broker.reject_next_modifications,
            "fills_paused": sim.broker.fills_paused,
            "ack_delay": sim.ack_delay,
            "connectivity_lost": sim.connectivity_lost,
            "clock": sim.clock_env(),
        }

    def execute(self, line: str) -> dict[str, Any]:
        """Run one line-protocol command."""
        parts = line.strip().split()
        if not parts:
            return {"ok": False, "error": "empty command"}
        cmd, args = parts[0].lower(), parts[1:]
        try:
            if cmd == "drop":
                return {"ok": True, "dropped": self.drop_connections(_opt_int(args, 0))}
            if cmd == "refuse":
                self.refuse_connections(float(args[0]), _opt_int(args, 1))
            elif cmd == "reject":
                self.reject_next_orders(int(args[0]) if args else 1)
            elif cmd == "rejectmod":
                self.reject_next_modifications(int(args[0]) if args else 1)
            elif cmd == "delay":
                self.delay_acks(float(args[0]))
            elif cmd == "delaypos":
                self.delay_positions(float(args[0]), _opt_int(args, 1))
            elif cmd == "pause":
                self.pause_fills()
            elif cmd == "resume":
                self.resume_fills()
            elif cmd == "spot":
                self.set_spot(float(args[0]))
            elif cmd == "shift":
                self.shift_spot(float(args[0]))
            elif cmd == "notify":
                self.notify(int(args[0]))
            elif cmd == "status":
                pass
            elif cmd == "help":
                return {"ok": True, "help": __doc__}
            else:
                return {"ok": False, "error": f"unknown command {cmd!r}"}
        except (IndexError, ValueError) as exc:
            return {"ok": False, "error": str(exc) or f"bad arguments for {cmd}"}
        return {"ok": True, **self.status()}


def _opt_int(args: list[str], index: int) -> int | None:
    return int(args[index]) if len(args) > index else None


class ControlServer:
    """Line protocol over TCP: one command per line, one JSON object per reply line."""

    def __init__(self, control: Control, host: str, port: int) -> None:
        self.control = control
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("control port listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                reply = self.control.execute(line.decode(errors="replace"))
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def send_command(host: str, port: int, command: str) -> dict[str, Any]:
    """Client side of the control port (used by the CLI and by other processes)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write((command.strip() + "\n").encode())
        await writer.drain()
        line = await reader.readline()
        result: dict[str, Any] = json.loads(line)
        return result
    finally:
        writer.close()
