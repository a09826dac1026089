"""The TCP side: one listening port per account ("one follower = one gateway").

A ``Gateway`` accepts API clients on its port, runs the handshake, keeps the
per-connection subscriptions (tickers, positions, account updates, account
summary) and routes broker events: order events to the owning client and to
client 0, account changes to every subscribed connection of that account.
Every message in and out is logged at debug level on ``ibsim.wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from spreadpilot.clock import NEW_YORK

from . import decoder as dec
from . import encoder as enc
from .accounts import snapshot
from .contracts import STOCK_CON_ID, SYMBOL, ContractQuery, Instrument
from .framing import (
    FramingError,
    encode_frame,
    handshake_reply,
    negotiate,
    read_frame,
    read_handshake,
)
from .market import expiry_close
from .orders import (
    AccountChanged,
    ComboLegSpec,
    CommissionEvent,
    Event,
    ExecReport,
    Leg,
    OrderError,
    OrderTicket,
    OrderUpdate,
    WhatIfResult,
    WorkingOrder,
    combo_quote,
)

if TYPE_CHECKING:
    from .sim import IBSim

log = logging.getLogger("ibsim.server")
wire = logging.getLogger("ibsim.wire")

MAX_WRITE_BUFFER = 64 * 1024 * 1024
FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
CONNECTIVITY_TEXT = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
}


@dataclass
class TickerSub:
    """One streaming market-data request and what was last sent for it."""

    req_id: int
    legs: list[Leg]
    combo: bool
    generic: frozenset[str] = frozenset()
    sent: dict[int, tuple[float, ...]] = field(default_factory=dict)


@dataclass(eq=False)
class Connection:
    gateway: Gateway
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    version: int = 0
    client_id: int = -1
    tickers: dict[int, TickerSub] = field(default_factory=dict)
    market_data_type: int = 1
    positions_sub: bool = False
    account_updates_sub: bool = False
    summary_subs: dict[int, list[str]] = field(default_factory=dict)
    multi_subs: dict[int, str] = field(default_factory=dict)
    sent_positions: set[int] = field(default_factory=set)
    sent_portfolio: set[int] = field(default_factory=set)
    recent: deque[float] = field(default_factory=deque)
    #: Answers scheduled for later (a delay fault); cancelled when the connection closes.
    pending: set[asyncio.TimerHandle] = field(default_factory=set)
    closed: bool = False

    @property
    def label(self) -> str:
        return f"{self.gateway.account}:{self.gateway.port}/c{self.client_id}"

    def send(self, fields: list[str]) -> None:
        if self.closed:
            return
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("%s -> %s", self.label, "|".join(fields))
        self.gateway.messages_out += 1
        self.writer.write(encode_frame(fields))
        transport = self.writer.transport
        if transport is not None and transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("%s: client not reading, dropping connection", self.label)
            self.close()

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(enc.error(req_id, code, text, self.version))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for handle in self.pending:
            handle.cancel()
        self.pending.clear()
        with contextlib.suppress(Exception):
            self.writer.close()

    def later(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``seconds`` of wall time, unless the connection closes first."""

        def fire() -> None:
            self.pending.discard(handle)
            if not self.closed:
                fn()

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        self.pending.add(handle)


Handler = Callable[[Connection, list[str]], Awaitable[None] | None]


class Gateway:
    """One paper gateway: a port serving one account."""

    def __init__(self, sim: IBSim, host: str, port: int, account: str) -> None:
        self.sim = sim
        self.host = host
        self.requested_port = port
        self.port = port
        self.account = account
        self.server: asyncio.Server | None = None
        self.connections: dict[int, Connection] = {}
        self._all: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reopen: asyncio.TimerHandle | None = None
        self.messages_in = 0
        self.messages_out = 0
        #: Wall seconds by which the answer to reqPositions is held (a fault; 0 = none).
        self.positions_delay = 0.0
        self.handlers: dict[int, Handler] = {
            1: self.on_market_data,
            2: self.on_cancel_market_data,
            3: self.on_place_order,
            4: self.on_cancel_order,
            5: self.on_open_orders,
            6: self.on_account_updates,
            7: self.on_executions,
            8: self.on_req_ids,
            9: self.on_contract_details,
            15: self.on_ignore,  # reqAutoOpenOrders
            16: self.on_all_open_orders,
            17: self.on_managed_accounts,
            49: self.on_current_time,
            58: self.on_global_cancel,
            59: self.on_market_data_type,
            61: self.on_positions,
            62: self.on_account_summary,
            63: self.on_cancel_account_summary,
            64: self.on_cancel_positions,
            71: self.on_ignore,  # startApi repeated
            74: self.on_positions_multi,
            75: self.on_ignore,  # cancelPositionsMulti
            76: self.on_account_updates_multi,
            77: self.on_cancel_account_updates_multi,
            78: self.on_sec_def_opt_params,
            99: self.on_completed_orders,
        }

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        sock = self.server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("gateway for %s listening on %s:%d", self.account, self.host, self.port)

    async def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        self.drop_connections()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def drop_connections(self) -> int:
        """Close every client socket (the client sees a disconnect)."""
        conns = list(self._all)
        for conn in conns:
            conn.close()
        return len(conns)

    def refuse(self, seconds: float) -> None:
        """Stop listening for ``seconds`` (wall): connects are refused by the OS."""
        if self.server is not None:
            self.server.close()
            self.server = None
        loop = asyncio.get_running_loop()
        if self._reopen is not None:
            self._reopen.cancel()
        self._reopen = loop.call_later(seconds, self._spawn_reopen)

    def _spawn_reopen(self) -> None:
        self._reopen = None
        task = asyncio.get_running_loop().create_task(self._listen_again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen_again(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True
            )
            log.info("gateway for %s accepting again on %d", self.account, self.port)

    def connected(self) -> list[Connection]:
        return [c for c in self.connections.values() if not c.closed]

    # -- connection handling ----------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = Connection(self, reader, writer)
        self._all.add(conn)
        try:
            await self._serve(conn)
        except (asyncio.IncompleteReadError, ConnectionError, FramingError) as exc:
            log.debug("%s: connection ended: %r", conn.label, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: connection failed", conn.label)
        finally:
            self._all.discard(conn)
            if self.connections.get(conn.client_id) is conn:
                del self.connections[conn.client_id]
            conn.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, conn: Connection) -> None:
        announced = await read_handshake(conn.reader)
        version = negotiate(announced)
        if version is None:
            log.info("refusing client with versions %s", announced)
            return
        conn.version = version
        now = self.sim.clock.now()
        reply_time = enc.connection_time(now)
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("%s handshake %s -> %d|%s", conn.label, announced, version, reply_time)
        conn.writer.write(handshake_reply(version, reply_time))
        fields = await read_frame(conn.reader)
        self._log_in(conn, fields)
        if dec.message_id(fields) != 71:
            raise FramingError(f"expected startApi, got {fields[:2]}")
        start = dec.parse_start_api(fields)
        conn.client_id = start.client_id
        if start.client_id in self.connections and not self.connections[start.client_id].closed:
            conn.error(
                -1,
                326,
                "Unable to connect as the client id is already in use. "
                "Retry with a unique client id.",
            )
            await asyncio.sleep(0.05)
            return
        self.connections[start.client_id] = conn
        conn.send(enc.managed_accounts([self.account]))
        conn.send(enc.next_valid_id(self.sim.broker.next_valid_id(self.account)))
        for code, text in FARM_NOTICES:
            conn.error(-1, code, text)
        while not conn.closed:
            fields = await read_frame(conn.reader)
            self.messages_in += 1
            self._log_in(conn, fields)
            if not fields:
                continue
            await self._dispatch(conn, fields)

    def _log_in(self, conn: Connection, fields: list[str]) -> None:
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("%s <- %s", conn.label, "|".join(fields))

    async def _dispatch(self, conn: Connection, fields: list[str]) -> None:
        try:
            msg_id = dec.message_id(fields)
        except dec.RequestError:
            log.warning("%s: unparseable message %r", conn.label, fields[:4])
            return
        if self._paced_out(conn, msg_id, fields):
            return
        handler = self.handlers.get(msg_id)
        if handler is None:
            log.info("%s: ignoring unsupported message %d", conn.label, msg_id)
            return
        try:
            result = handler(conn, fields)
            if result is not None:
                await result
        except dec.RequestError as exc:
            log.warning("%s: bad request %d: %s", conn.label, msg_id, exc)
        except Exception:
            log.exception("%s: handler for message %d failed", conn.label, msg_id)

    def _paced_out(self, conn: Connection, msg_id: int, fields: list[str]) -> bool:
        """Error 100 above the message rate limit; the message is not processed.

        The error carries the request's own id when it has one (so a client
        helper waiting on it is released), else -1.
        """
        limit = self.sim.config.pacing_limit
        if not limit:
            return False
        now = time.monotonic()
        recent = conn.recent
        while recent and now - recent[0] > 1.0:
            recent.popleft()
        recent.append(now)
        if len(recent) <= limit:
            return False
        req_id = -1
        with contextlib.suppress(Exception):
            if msg_id in (3,):
                req_id = int(fields[1])
            elif msg_id in (1, 9, 7, 62, 76):
                req_id = int(fields[2])
            elif msg_id == 78:
                req_id = int(fields[1])
        conn.error(req_id, 100, "Max rate of messages per second has been exceeded:max=50 rec=51")
        return True

    # -- routing ------------------------------------------------------------------

    def order_targets(self, order_client: int) -> list[Connection]:
        targets = []
        owner = self.connections.get(order_client)
        if owner is not None and not owner.closed:
            targets.append(owner)
        master = self.connections.get(0)
        if master is not None and not master.closed and order_client != 0:
            targets.append(master)
        return targets

    def route(self, events: list[Event]) -> None:
        changed = False
        for event in events:
            if isinstance(event, OrderUpdate):
                for conn in self.order_targets(event.order.client_id):
                    self._send_order_update(conn, event)
            elif isinstance(event, ExecReport):
                for conn in self.order_targets(event.order.client_id):
                    conn.send(enc.exec_details(-1, event.execution, conn.version))
            elif isinstance(event, CommissionEvent):
                for conn in self.order_targets(event.order.client_id):
                    conn.send(enc.commission_report(event.execution))
            elif isinstance(event, OrderError):
                owner = self.connections.get(event.client_id)
                if owner is not None:
                    owner.error(event.order_id, event.code, event.text)
            elif isinstance(event, WhatIfResult):
                owner = self.connections.get(event.client_id)
                if owner is not None:
                    owner.send(
                        enc.open_order(
                            event.ticket,
                            "PreSubmitted",
                            owner.version,
                            client_id=event.client_id,
                            account=event.account,
                            what_if=True,
                            margin=event.state,
                        )
                    )
            elif isinstance(event, AccountChanged):
                changed = True
        if changed:
            self.push_account()

    def _send_order_update(self, conn: Connection, event: OrderUpdate) -> None:
        order = event.order
        for part in event.parts:
            if part == "open":
                conn.send(
                    enc.open_order(
                        order.ticket, event.status or order.status, conn.version, order=order
                    )
                )
            else:
                conn.send(enc.order_status(order, event.status or order.status))

    def push_account(self, positions: bool = True) -> None:
        """Positions (after fills), portfolio, account values, summaries to subscribers."""
        conns = self.connected()
        if not conns:
            return
        account = self.sim.accounts[self.account]
        marks = self.sim.broker.marks(account)
        snap = snapshot(account, marks)
        values = snap.values()
        now = self.sim.clock.now()
        for conn in conns:
            if positions and conn.positions_sub:
                self._send_positions(conn)
            if conn.account_updates_sub:
                self._send_account_updates(conn, values, marks, now)
            for req_id, tags in conn.summary_subs.items():
                self._send_summary(conn, req_id, tags, values)
            for req_id, model in conn.multi_subs.items():
                for tag, value, currency in values:
                    conn.send(
                        enc.account_update_multi(req_id, self.account, model, tag, value, currency)
                    )

    def _send_positions(self, conn: Connection) -> None:
        account = self.sim.accounts[self.account]
        current = {p.instrument.con_id: p for p in account.open_positions()}
        for con_id in sorted(conn.sent_positions - current.keys()):
            pos = account.positions.get(con_id)
            if pos is not None:
                conn.send(enc.position(self.account, pos.instrument, 0.0, 0.0))
        for pos in current.values():
            conn.send(enc.position(self.account, pos.instrument, pos.quantity, pos.avg_cost))
        conn.sent_positions = set(current)

    def _send_account_updates(
        self,
        conn: Connection,
        values: list[tuple[str, str, str]],
        marks: dict[int, float],
        now: datetime,
    ) -> None:
        account = self.sim.accounts[self.account]
        for tag, text, currency in values:
            conn.send(enc.account_value(tag, text, currency, self.account))
        current = {p.instrument.con_id: p for p in account.open_positions()}
        for con_id in sorted(conn.sent_portfolio - current.keys()):
            pos = account.positions.get(con_id)
            if pos is not None:
                mark = marks.get(con_id, self.sim.market.mark(pos.instrument))
                conn.send(
                    enc.portfolio_value(
                        pos.instrument, 0.0, mark, 0.0, 0.0, 0.0, pos.realized, self.account
                    )
                )
        for pos in current.values():
            mark = marks.get(pos.instrument.con_id, 0.0)
            value = pos.quantity * mark * pos.instrument.multiplier
            unrealized = value - pos.quantity * pos.avg_cost
            conn.send(
                enc.portfolio_value(
                    pos.instrument,
                    pos.quantity,
                    mark,
                    value,
                    pos.avg_cost,
                    unrealized,
                    pos.realized,
                    self.account,
                )
            )
        conn.sent_portfolio = set(current)
        conn.send(enc.account_time(now))

    def _send_summary(
        self, conn: Connection, req_id: int, tags: list[str], values: list[tuple[str, str, str]]
    ) -> None:
        wanted = set(tags)
        every = "All" in wanted or not wanted
        for tag, value, currency in values:
            if every or tag in wanted:
                conn.send(enc.account_summary(req_id, self.account, tag, value, currency))

    # -- market data ---------------------------------------------------------------

    def _resolve(self, contract: ContractQuery, legs: list[ComboLegSpec]) -> list[Leg] | None:
        ticket = OrderTicket(order_id=0, contract=contract, legs=legs)
        return self.sim.broker.resolve_legs(ticket)

    def on_market_data(self, conn: Connection, fields: list[str]) -> None:
        req = dec.parse_market_data(fields)
        legs = self._resolve(req.contract, req.legs)
        if legs is None:
            conn.error(req.req_id, 200, "No security definition has been found for the request")
            return
        combo = req.contract.sec_type.upper() == "BAG"
        generic = frozenset(t.strip() for t in req.generic_ticks.split(",") if t.strip())
        sub = TickerSub(req.req_id, legs, combo, generic)
        conn.send(enc.market_data_type(req.req_id, conn.market_data_type))
        if not req.snapshot:
            conn.send(enc.tick_req_params(req.req_id))
        self._send_ticks(conn, sub, force=True)
        if req.snapshot or req.regulatory_snapshot:
            conn.send(enc.tick_snapshot_end(req.req_id))
        else:
            conn.tickers[req.req_id] = sub

    def on_cancel_market_data(self, conn: Connection, fields: list[str]) -> None:
        conn.tickers.pop(dec.parse_req_id(fields), None)

    def on_market_data_type(self, conn: Connection, fields: list[str]) -> None:
        conn.market_data_type = dec.FieldReader(fields, 2).int(1)

    def update_tickers(self) -> None:
        if self.sim.connectivity_lost:
            return
        for conn in self.connected():
            for sub in list(conn.tickers.values()):
                self._send_ticks(conn, sub, force=False)

    def _send_ticks(self, conn: Connection, sub: TickerSub, force: bool) -> None:
        market = self.sim.market
        req_id = sub.req_id
        if sub.combo:
            cq = combo_quote(market, sub.legs)
            quotes = [market.quote(leg.instrument) for leg in sub.legs]
            bid_size = float(min(q.bid_size for q in quotes))
            ask_size = float(min(q.ask_size for q in quotes))
            last = round(cq.mid, 2)
            prices: list[tuple[int, float, float]] = [
                (enc.BID, cq.bid, bid_size),
                (enc.ASK, cq.ask, ask_size),
                (enc.LAST, last, 1.0),
            ]
            greeks = None
            und = None
        else:
            inst: Instrument = sub.legs[0].instrument
            q = market.quote(inst)
            prices = [
                (enc.BID, q.bid, float(q.bid_size)),
                (enc.ASK, q.ask, float(q.ask_size)),
                (enc.LAST, q.last, float(q.last_size)),
            ]
            greeks = q.greeks
            und = q.und_price
        for tick_type, price, size in prices:
            key = (price, size)
            if force or sub.sent.get(tick_type) != key:
                sub.sent[tick_type] = key
                conn.send(enc.tick_price(req_id, tick_type, price, max(size, 1.0)))
        if greeks is not None and "106" in sub.generic:
            iv = round(greeks.vol, 6)
            if force or sub.sent.get(enc.OPTION_IMPLIED_VOL) != (iv,):
                sub.sent[enc.OPTION_IMPLIED_VOL] = (iv,)
                conn.send(enc.tick_generic(req_id, enc.OPTION_IMPLIED_VOL, iv))
        if greeks is not None and und is not None:
            und_r = round(und, 2)
            for tick_type, opt_price in (
                (enc.BID_OPTION, prices[0][1]),
                (enc.ASK_OPTION, prices[1][1]),
                (enc.LAST_OPTION, prices[2][1]),
                (enc.MODEL_OPTION, round(greeks.price, 4)),
            ):
                key2 = (opt_price, und_r)
                if force or sub.sent.get(tick_type) != key2:
                    sub.sent[tick_type] = key2
                    conn.send(
                        enc.tick_option_computation(
                            req_id,
                            tick_type,
                            round(greeks.vol, 6),
                            round(greeks.delta, 6),
                            opt_price,
                            round(greeks.gamma, 6),
                            round(greeks.vega, 6),
                            round(greeks.theta, 6),
                            und_r,
                        )
                    )

    # -- contracts ----------------------------------------------------------------

    def on_contract_details(self, conn: Connection, fields: list[str]) -> None:
        req = dec.parse_contract_details(fields)
        if req.contract.sec_type.upper() == "BAG":
            # TWS answers 321 and nothing else; we also end the request so that a
            # client helper waiting on it is released instead of hanging forever.
            conn.error(
                req.req_id,
                321,
                "Error validating request.-'bW' : cause - Invalid security type (BAG) "
                "for contract details",
            )
            conn.send(enc.contract_details_end(req.req_id))
            return
        today = self.sim.clock.now().astimezone(NEW_YORK).date()
        found = self.sim.chain.match(req.contract, today)
        if not found:
            conn.error(req.req_id, 200, "No security definition has been found for the request")
            return
        for inst in found:
            close = expiry_close(inst.expiry) if inst.expiry else None
            conn.send(enc.contract_details(req.req_id, inst, conn.version, close))
        conn.send(enc.contract_details_end(req.req_id))

    def on_sec_def_opt_params(self, conn: Connection, fields: list[str]) -> None:
        req = dec.parse_sec_def_opt_params(fields)
        if req.underlying_symbol.upper() == SYMBOL and req.underlying_con_id in (0, STOCK_CON_ID):
            today = self.sim.clock.now().astimezone(NEW_YORK).date()
            expirations = [d.strftime("%Y%m%d") for d in self.sim.chain.expiries(today)]
            strikes = self.sim.chain.strikes
            for exchange in ("SMART", "CBOE"):
                conn.send(
                    enc.sec_def_opt_params(
                        req.req_id, exchange, STOCK_CON_ID, SYMBOL, "100", expirations, strikes
                    )
                )
        conn.send(enc.sec_def_opt_params_end(req.req_id))

    # -- orders -------------------------------------------------------------------

    async def on_place_order(self, conn: Connection, fields: list[str]) -> None:
        ticket = dec.parse_place_order(fields, conn.version)
        if self.sim.ack_delay > 0:
            await asyncio.sleep(self.sim.ack_delay)
        self.sim.route(self.sim.broker.place(self.account, conn.client_id, ticket))

    async def on_cancel_order(self, conn: Connection, fields: list[str]) -> None:
        req = dec.parse_cancel_order(fields)
        if self.sim.ack_delay > 0:
            await asyncio.sleep(self.sim.ack_delay)
        self.sim.route(self.sim.broker.cancel(self.account, conn.client_id, req.order_id))

    def on_global_cancel(self, conn: Connection, fields: list[str]) -> None:
        self.sim.route(self.sim.broker.global_cancel(self.account))

    def _send_open_orders(self, conn: Connection, orders: list[WorkingOrder]) -> None:
        for order in orders:
            conn.send(enc.open_order(order.ticket, order.status, conn.version, order=order))
            conn.send(enc.order_status(order))
        conn.send(enc.open_order_end())

    def on_open_orders(self, conn: Connection, fields: list[str]) -> None:
        client = None if conn.client_id == 0 else conn.client_id
        self._send_open_orders(conn, self.sim.broker.live_orders(self.account, client))

    def on_all_open_orders(self, conn: Connection, fields: list[str]) -> None:
        self._send_open_orders(conn, self.sim.broker.live_orders(self.account))

    def on_completed_orders(self, conn: Connection, fields: list[str]) -> None:
        for order in self.sim.broker.completed_orders(self.account):
            conn.send(enc.completed_order(order, conn.version))
        conn.send(enc.completed_orders_end())

    def on_executions(self, conn: Connection, fields: list[str]) -> None:
        flt = dec.parse_executions(fields)
        since = _parse_filter_time(flt.time)
        for ex in self.sim.broker.executions.get(self.account, []):
            if flt.client_id and ex.client_id != flt.client_id:
                continue
            if flt.account and flt.account != ex.account:
                continue
            if flt.symbol and flt.symbol.upper() != ex.instrument.symbol:
                continue
            if flt.sec_type and flt.sec_type.upper() != ex.instrument.sec_type:
                continue
            if flt.side and flt.side.upper()[:1] != ("B" if ex.side == "BOT" else "S"):
                continue
            if since is not None and ex.time < since:
                continue
            conn.send(enc.exec_details(flt.req_id, ex, conn.version))
            conn.send(enc.commission_report(ex))
        conn.send(enc.exec_details_end(flt.req_id))

    def on_req_ids(self, conn: Connection, fields: list[str]) -> None:
        conn.send(enc.next_valid_id(self.sim.broker.next_valid_id(self.account)))

    # -- account --------------------------------------------------------------------

    def on_managed_accounts(self, conn: Connection, fields: list[str]) -> None:
        conn.send(enc.managed_accounts([self.account]))

    def on_current_time(self, conn: Connection, fields: list[str]) -> None:
        conn.send(enc.current_time(self.sim.clock.now()))

    def on_positions(self, conn: Connection, fields: list[str]) -> None:
        # The subscription starts now; with a delay fault only the answer waits,
        # while streamed updates (push_account) keep flowing meanwhile.
        conn.positions_sub = True
        if self.positions_delay > 0:
            conn.later(self.positions_delay, lambda: self._answer_positions(conn))
        else:
            self._answer_positions(conn)

    def _answer_positions(self, conn: Connection) -> None:
        """The answer to reqPositions: the whole current book, then positionEnd."""
        conn.sent_positions = set()
        self._send_positions(conn)
        conn.send(enc.position_end())

    def on_cancel_positions(self, conn: Connection, fields: list[str]) -> None:
        conn.positions_sub = False

    def on_positions_multi(self, conn: Connection, fields: list[str]) -> None:
        r = dec.FieldReader(fields, 2)
        req_id = r.int()
        account = self.sim.accounts[self.account]
        for pos in account.open_positions():
            inst = pos.instrument
            fields16 = enc.position(self.account, inst, pos.quantity, pos.avg_cost)
            conn.send(["71", "1", str(req_id), self.account, *fields16[3:16], ""])
        conn.send(["72", "1", str(req_id)])

    def _values(self) -> tuple[list[tuple[str, str, str]], dict[int, float]]:
        account = self.sim.accounts[self.account]
        marks = self.sim.broker.marks(account)
        return snapshot(account, marks).values(), marks

    def on_account_updates(self, conn: Connection, fields: list[str]) -> None:
        req = dec.parse_account_updates(fields)
        if req.account and req.account != self.account:
            conn.error(-1, 321, f"Error validating request: unknown account {req.account}")
            return
        conn.account_updates_sub = req.subscribe
        if not req.subscribe:
            return
        values, marks = self._values()
        conn.sent_portfolio = set()
        self._send_account_updates(conn, values, marks, self.sim.clock.now())
        conn.send(enc.account_download_end(self.account))

    def on_account_summary(self, conn: Connection, fields: list[str]) -> None:
        req = dec.parse_account_summary(fields)
        values, _ = self._values()
        conn.summary_subs[req.req_id] = req.tags
        self._send_summary(conn, req.req_id, req.tags, values)
        conn.send(enc.account_summary_end(req.req_id))

    def on_cancel_account_summary(self, conn: Connection, fields: list[str]) -> None:
        conn.summary_subs.pop(dec.parse_req_id(fields), None)

    def on_account_updates_multi(self, conn: Connection, fields: list[str]) -> None:
        req = dec.parse_account_updates_multi(fields)
        if req.account and req.account not in (self.account, "All"):
            conn.error(req.req_id, 321, f"Error validating request: unknown account {req.account}")
            return
        values, _ = self._values()
        for tag, value, currency in values:
            conn.send(
                enc.account_update_multi(
                    req.req_id, self.account, req.model_code, tag, value, currency
                )
            )
        conn.send(enc.account_update_multi_end(req.req_id))
        conn.multi_subs[req.req_id] = req.model_code

    def on_cancel_account_updates_multi(self, conn: Connection, fields: list[str]) -> None:
        conn.multi_subs.pop(dec.parse_req_id(fields), None)

    def on_ignore(self, conn: Connection, fields: list[str]) -> None:
        return None

    def notify(self, code: int, text: str | None = None) -> None:
        for conn in self.connected():
            conn.error(-1, code, text or CONNECTIVITY_TEXT.get(code, "notice"))


def _parse_filter_time(text: str) -> datetime | None:
    """Execution filter time: ``yyyymmdd hh:mm:ss`` (optionally with a zone), UTC if none."""
    text = text.strip()
    if not text:
        return None
    parts = text.replace("-", " ").split()
    try:
        moment = datetime.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S")
    except (ValueError, IndexError):
        return None
    zone = parts[2] if len(parts) > 2 else "UTC"
    try:
        return moment.replace(tzinfo=ZoneInfo(zone))
    except Exception:
        return moment.replace(tzinfo=UTC)
