"""The ladder executor: SPEC section 3 for one signal and one follower.

Why it is built the way it is:

* **One record per (signal, follower), created by a unique index.** Ten
  deliveries of a signal race on ``create_if_absent``; exactly one wins, and
  only a record can start a ladder.
* **Write, then send.** The steps before the order only read from the
  broker (sizing, quotes, margin); they are carried to ONE compare-and-set
  that records them all (RECEIVED -> SIZED -> QUOTED -> MARGIN_OK ->
  WORKING, each with its own time) and reserves the order id, before the
  order is sent; ``submitted`` is set after. A rung move is recorded right
  after it is sent (it only re-prices the one order). A restart therefore
  always knows whether an order may exist, and reconciliation (by orderRef)
  decides whether to adopt it, settle it from executions, or stop and alert;
  it never places an order for a record that already reserved an order id
  (see ``_no_trace_at_ib``).
* **One combo, modified in place.** The ladder moves the same order id down
  the rungs; a cancel racing a fill is how duplicates happen. A move IB
  refuses leaves the order working at the previous rung: it is cancelled
  (confirmed by IB) and the execution ends, never left working untracked
  (see ``_refused_modification``).
* **Fail closed.** Unknown margin, unknown quotes, an unexpected broker state:
  no order, and an alert.
* **Isolation.** One task per execution, one lock per follower, nothing shared
  across followers but the event loop, so a slow gateway only slows its own
  follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ib_async import Contract, Trade
from spreadpilot.adapters.ib_broker import (
    BrokerError,
    GatewayUnavailable,
    IBBroker,
    MarginCheck,
    OrderView,
)
from spreadpilot.clock import Clock
from spreadpilot.domain.alerts import Alert, AlertType, Severity
from spreadpilot.domain.execution import (
    ExecutionState,
    IllegalTransition,
    can_transition,
    is_terminal,
)
from spreadpilot.domain.followers import Follower, TradingMode, size_order
from spreadpilot.domain.ladder import ladder_plan
from spreadpilot.domain.signals import Signal
from spreadpilot.domain.spreads import (
    InvalidQuote,
    VerticalSpread,
    assert_credit_limit,
    mid_credit,
    natural_credit,
)
from spreadpilot.domain.timevalue import Position, group_spreads

from sidecar.metrics import SidecarMetrics
from sidecar.session_pool import Session, SessionPool
from sidecar.store import ExecutionStore, Record, StaleRecord, Step, StoreUnavailable

log = logging.getLogger(__name__)

S = ExecutionState
OPEN_ORDER_STATES = frozenset({S.WORKING, S.PARTIAL})


class AlertSink(Protocol):
    def publish(self, alert: Alert) -> Any: ...


class ModeSource(Protocol):
    def mode_for(self, follower_id: str) -> TradingMode: ...


@dataclass(frozen=True)
class ExecutorConfig:
    min_price: float = 0.70
    price_increment: float = 0.01
    max_attempts: int = 10
    timeout_seconds: float = 5.0
    #: wall seconds to wait for a session to become ready before giving up
    ready_timeout: float = 3.0
    #: wall seconds to wait for a dropped gateway mid-ladder before leaving the
    #: execution to reconciliation
    reconnect_wait: float = 30.0
    #: clock seconds after which an execution that never sent an order is
    #: abandoned instead of resumed (a stale signal must not trade)
    max_age_seconds: float = 900.0
    #: wall seconds to wait for IB to confirm a cancel
    cancel_wait: float = 5.0
    #: wall seconds between probes of the store for executions paused by an
    #: outage: the first wait, and the cap of its doubling
    paused_retry_first: float = 0.5
    paused_retry_max: float = 10.0


def _num(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), 4)


class Executor:
    """Runs executions, one at a time per follower, concurrently across followers."""

    def __init__(
        self,
        *,
        config: ExecutorConfig,
        clock: Clock,
        pool: SessionPool,
        store: ExecutionStore,
        alerts: AlertSink,
        metrics: SidecarMetrics,
        modes: ModeSource,
    ) -> None:
        self.config = config
        self.clock = clock
        self.pool = pool
        self.store = store
        self.alerts = alerts
        self.metrics = metrics
        self.modes = modes
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._received_wall: dict[str, float] = {}
        self.last_signal: dict[str, Any] | None = None
        #: executions paused by a store outage: execution id -> follower id
        self._paused: dict[str, str] = {}
        self._paused_task: asyncio.Task[None] | None = None

    # -- entry points -------------------------------------------------------------

    async def submit_many(self, signal: Signal, followers: Sequence[Follower]) -> list[Record]:
        """Create (or find) each follower's execution, in one write, and start them.

        Returns, in the order of ``followers``, each stored record plus
        ``created``. A redelivery returns the existing records and starts
        nothing new. A store that does not answer raises ``StoreUnavailable``
        and nothing starts: the caller answers 503 and the retry finds the
        records this write may have made.
        """
        now, wall = self.clock.now(), time.monotonic()
        outcomes = await self.store.create_many(signal, [f.id for f in followers], now)
        self.last_signal = {
            "signal_id": signal.signal_id,
            "received_at": now.isoformat(),
            "strategy": signal.strategy.value,
        }
        replies: list[Record] = []
        for created, stored in outcomes:
            exec_id = stored["_id"]
            if created:
                self._received_wall[exec_id] = wall
            if not is_terminal(S(stored["state"])):
                # A record this call created is as fresh as a read: hand it over.
                self.spawn(exec_id, stored["follower_id"], stored if created else None)
            replies.append({**stored, "created": created})
        return replies

    def spawn(self, execution_id: str, follower_id: str, record: Record | None = None) -> None:
        """Start driving ``execution_id`` unless a task already does.

        ``record``: the record as just written, which saves the task its first
        read (one database round trip less between a signal and its order).
        """
        task = self._tasks.get(execution_id)
        if task is not None and not task.done():
            return
        self._tasks[execution_id] = asyncio.create_task(
            self._run(execution_id, follower_id, record), name=f"exec-{execution_id}"
        )

    def running(self, execution_id: str) -> bool:
        task = self._tasks.get(execution_id)
        return task is not None and not task.done()

    def working_count(self) -> int:
        return sum(1 for t in self._tasks.values() if not t.done())

    def paused(self) -> dict[str, str]:
        """Executions waiting for the store to answer again (id -> follower id)."""
        return dict(self._paused)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        if self._paused_task is not None:
            tasks.append(self._paused_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- one execution --------------------------------------------------------------

    async def _run(self, execution_id: str, follower_id: str, record: Record | None = None) -> None:
        session = self.pool.get(follower_id)
        if session is None:
            await self._fail_no_session(execution_id, follower_id)
            return
        async with session.lock:
            try:
                await self._drive(execution_id, session, record)
            except StoreUnavailable as exc:
                # The record cannot be written, so nothing more may be sent.
                # A working order keeps its last limit at IB. Reconciliation
                # would resume it, but only after a gateway (re)connect; with
                # the session up nothing else would, so the execution is
                # remembered and re-spawned once the store answers again.
                log.error(
                    "execution store unavailable; execution paused",
                    extra={"execution_id": execution_id, "error": str(exc)},
                )
                self._pause(execution_id, follower_id)
                self._alert(
                    AlertType.COMPONENT_DOWN,
                    f"execution {execution_id} paused: execution store unavailable",
                    {"execution_id": execution_id, "error": str(exc)},
                    follower_id,
                    alert_id=f"{execution_id}:store-down",
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("execution crashed", extra={"execution_id": execution_id})
                await self._fail_unexpected(execution_id, follower_id)

    def _pause(self, execution_id: str, follower_id: str) -> None:
        """Remember a paused execution and make sure something will resume it."""
        self._paused[execution_id] = follower_id
        if self._paused_task is None or self._paused_task.done():
            self._paused_task = asyncio.create_task(
                self._resume_paused(), name="exec-resume-paused"
            )

    async def _resume_paused(self) -> None:
        """Re-spawn paused executions once the store answers, with backoff.

        Why a probe and not just a re-spawn: a re-spawn against a store still
        down would pause again and raise one more COMPONENT_DOWN alert per
        attempt. A ``get`` of the record answers the only question that
        matters (can the record be read again?) without side effects. The
        re-spawned task takes the ordinary resume path (``_drive``), which
        adopts the working order by orderRef or settles it from IB's
        executions and never places a second order. An execution whose
        previous task is still finishing (it holds the follower lock) is
        left for the next round, so the re-spawn is never swallowed by
        ``spawn``'s "already running" check.
        """
        delay = self.config.paused_retry_first
        while self._paused:
            await asyncio.sleep(delay)
            answered = False
            for execution_id, follower_id in list(self._paused.items()):
                if self.running(execution_id):
                    continue
                try:
                    await self.store.get(execution_id)
                except StoreUnavailable:
                    break
                except Exception:
                    log.exception(
                        "probe of a paused execution failed",
                        extra={"execution_id": execution_id},
                    )
                    break
                answered = True
                del self._paused[execution_id]
                log.info(
                    "execution store answers again; resuming paused execution",
                    extra={"execution_id": execution_id, "follower_id": follower_id},
                )
                self.spawn(execution_id, follower_id)
            delay = (
                self.config.paused_retry_first
                if answered
                else min(delay * 2, self.config.paused_retry_max)
            )

    async def _drive(self, execution_id: str, session: Session, hint: Record | None) -> None:
        for _ in range(3):
            record, hint = hint or await self.store.get(execution_id), None
            if record is None or is_terminal(S(record["state"])):
                return
            state = S(record["state"])
            if state in OPEN_ORDER_STATES:
                done = await self._resume_order(record, session)
            else:
                try:
                    done = await self._open(record, session)
                except StaleRecord:
                    # The record moved under us (e.g. the handed-over copy was
                    # old): read it again. A record that reserved an order id
                    # is resumed by adopting that order, never by a second one.
                    continue
            if done:
                return
        log.error("execution did not settle", extra={"execution_id": execution_id})

    # -- before an order exists -------------------------------------------------------

    async def _open(self, record: Record, session: Session) -> bool:
        """RECEIVED .. MARGIN_OK -> WORKING. Returns True when this task is finished."""
        follower = session.follower
        signal = Signal.model_validate(record["signal"])
        state = S(record["state"])
        # Steps taken and not yet written: they go with the next write (the
        # order id reservation, or the end), see ``sidecar.store.Step``.
        taken: list[Step] = []

        age = (self.clock.now() - record["created_at"]).total_seconds()
        if age > self.config.max_age_seconds:
            await self._end(
                record,
                S.FAILED,
                AlertType.GATEWAY_UNREACHABLE,
                f"execution abandoned: no order was sent within {self.config.max_age_seconds:.0f}s",
                {"age_seconds": round(age, 1)},
            )
            return True

        mode = self.modes.mode_for(follower.id)
        if not mode.allows_opening() or not follower.accepts_new_entries:
            reason = (
                f"trading mode {mode.value}"
                if not mode.allows_opening()
                else f"follower {'disabled' if not follower.enabled else follower.state.value}"
            )
            await self._end(
                record,
                S.SKIPPED,
                AlertType.KILL_SWITCH,
                f"entry not sent: {reason}",
                {"mode": mode.value, "reason": reason},
                severity=Severity.WARNING,
            )
            return True

        # 1. Size.
        qty = size_order(signal.qty_per_leg, follower)
        if qty <= 0:
            await self._end(
                record,
                S.SKIPPED,
                AlertType.POSITION_LIMIT,
                "sized to 0 contracts: nothing to trade",
                {
                    "qty_per_leg": signal.qty_per_leg,
                    "qty_multiplier": follower.qty_multiplier,
                    "max_qty_per_leg": follower.max_qty_per_leg,
                },
                severity=Severity.INFO,
            )
            return True

        if not await self.pool.wait_ready(session, self.config.ready_timeout):
            await self._gateway_down_before_order(record, session)
            return True
        broker = session.broker

        try:
            # Position limit (SPEC 1): never exceed max_open_spreads. Asked at
            # the same time as the legs are qualified: both only read.
            spread = VerticalSpread.from_signal(signal)
            expiry = spread.expiry.strftime("%Y%m%d")
            open_spreads, long_c, short_c = await asyncio.gather(
                self._open_spread_count(broker),
                broker.qualify_option(
                    signal.ticker, expiry, spread.long_leg.strike, spread.right.value
                ),
                broker.qualify_option(
                    signal.ticker, expiry, spread.short_leg.strike, spread.right.value
                ),
            )
            if open_spreads >= follower.max_open_spreads:
                await self._end(
                    record,
                    S.POSITION_LIMIT,
                    AlertType.POSITION_LIMIT,
                    f"{open_spreads} open spread(s), limit {follower.max_open_spreads}: not sent",
                    {
                        "open_spreads": open_spreads,
                        "max_open_spreads": follower.max_open_spreads,
                        "qty": qty,
                    },
                )
                return True
            if state is S.RECEIVED:
                taken.append(Step(S.SIZED, {"qty": qty}, self.clock.now()))
                state = S.SIZED

            # 2. Both legs were qualified above (never the BAG).
            # 3. Quote both legs.
            md = self.pool.market_data_session(session)
            if md is session:
                long_q, short_q = await broker.quote(long_c, short_c)
            else:
                md_long = await md.broker.qualify_option(
                    signal.ticker, expiry, spread.long_leg.strike, spread.right.value
                )
                md_short = await md.broker.qualify_option(
                    signal.ticker, expiry, spread.short_leg.strike, spread.right.value
                )
                long_q, short_q = await md.broker.quote(md_long, md_short)
        except GatewayUnavailable as exc:
            await self._gateway_down_before_order(record, session, exc, taken)
            return True
        except BrokerError as exc:
            await self._end(
                record,
                S.FAILED,
                AlertType.GATEWAY_UNREACHABLE,
                f"broker error before any order: {exc.text}",
                {"error_code": exc.code, "error_text": exc.text},
                via=taken,
            )
            return True

        min_price = follower.min_credit or self.config.min_price
        strikes = {"strike_long": signal.strike_long, "strike_short": signal.strike_short}
        try:
            mid = mid_credit(short_q.bid, short_q.ask, long_q.bid, long_q.ask)
            natural = natural_credit(short_q.bid, short_q.ask, long_q.bid, long_q.ask)
        except InvalidQuote as exc:
            await self._end(
                record,
                S.FAILED,
                AlertType.MID_TOO_LOW,
                f"no usable quote: {exc}",
                {"strategy": signal.strategy.value, **strikes, "threshold": min_price},
                via=taken,
            )
            return True
        quotes = {
            "long": {"bid": long_q.bid, "ask": long_q.ask},
            "short": {"bid": short_q.bid, "ask": short_q.ask},
        }
        rungs = ladder_plan(mid, self.config.price_increment, min_price, self.config.max_attempts)
        fields = {
            "legs": {
                "long": {"con_id": long_c.con_id, "strike": long_c.strike, "right": long_c.right},
                "short": {
                    "con_id": short_c.con_id,
                    "strike": short_c.strike,
                    "right": short_c.right,
                },
                "expiry": expiry,
                "symbol": signal.ticker,
            },
            "quotes": quotes,
            "mid_credit": round(mid, 4),
            "natural_credit": round(natural, 4),
            "min_price": min_price,
            "ladder": [{"credit": r.credit, "limit": r.limit} for r in rungs],
        }
        if state is S.SIZED:
            taken.append(Step(S.QUOTED, fields, self.clock.now()))
            state = S.QUOTED
        record = {**record, **fields}

        if not rungs:
            await self._end(
                record,
                S.MID_TOO_LOW,
                AlertType.MID_TOO_LOW,
                f"mid credit {mid:.2f} is below the minimum {min_price:.2f}: no order",
                {
                    "mid": round(mid, 4),
                    "natural": round(natural, 4),
                    "threshold": min_price,
                    "strategy": signal.strategy.value,
                    **strikes,
                },
                via=taken,
            )
            return True

        # 4. Margin: what-if of the combo at the first rung.
        bag = broker.bag([(long_c, "BUY"), (short_c, "SELL")])
        first_limit = assert_credit_limit(rungs[0].limit)
        try:
            check = await broker.what_if(
                bag, broker.limit_order(0, qty, first_limit, record["order_ref"])
            )
        except GatewayUnavailable as exc:
            await self._gateway_down_before_order(record, session, exc, taken)
            return True
        except BrokerError as exc:
            # Unknown margin = no order (fail closed).
            await self._end(
                record,
                S.NO_MARGIN,
                AlertType.NO_MARGIN,
                f"margin check failed: {exc.text}",
                {"error_code": exc.code, "error_text": exc.text, "qty": qty},
                via=taken,
            )
            return True
        if not check.sufficient:
            await self._end(
                record,
                S.NO_MARGIN,
                AlertType.NO_MARGIN,
                _no_margin_message(check, qty),
                {**check.as_params(), "qty": qty, "limit": first_limit},
                via=taken,
            )
            return True
        if state is S.QUOTED:
            margin = {"margin": check.as_params()}
            taken.append(Step(S.MARGIN_OK, margin, self.clock.now()))
            record = {**record, **margin}

        # Re-check the kill switch right before money moves.
        mode = self.modes.mode_for(follower.id)
        if not mode.allows_opening():
            await self._end(
                record,
                S.SKIPPED,
                AlertType.KILL_SWITCH,
                f"entry not sent: trading mode {mode.value}",
                {"mode": mode.value},
                severity=Severity.WARNING,
                via=taken,
            )
            return True

        # 5. One BUY combo at a negative limit, id persisted before sending.
        return await self._place_and_ladder(record, session, bag, qty, taken)

    async def _place_and_ladder(
        self, record: Record, session: Session, bag: Contract, qty: int, taken: list[Step]
    ) -> bool:
        broker = session.broker
        rung0 = record["ladder"][0]
        limit = assert_credit_limit(float(rung0["limit"]))
        try:
            order_id = broker.next_order_id()
        except GatewayUnavailable as exc:
            await self._gateway_down_before_order(record, session, exc, taken)
            return True
        now = self.clock.now()
        # The one write between the signal and its order: every step so far
        # and the reserved order id, before anything is sent.
        record = await self._advance(
            record,
            S.WORKING,
            {
                "order_id": order_id,
                "submitted": False,
                "rung": 0,
                "limit": limit,
                "rung_started_at": now,
                "qty": qty,
                "initial_limit": limit,
            },
            via=taken,
        )
        order = broker.limit_order(order_id, qty, limit, record["order_ref"])
        try:
            trade = broker.place(bag, order)
        except GatewayUnavailable as exc:
            # place() refuses before writing to the socket: nothing was sent.
            await self._end(
                record,
                S.FAILED,
                AlertType.GATEWAY_UNREACHABLE,
                f"gateway unreachable, no order sent: {exc.text}",
                {"error_code": exc.code, "error_text": exc.text},
            )
            return True
        self.metrics.orders_sent.labels(session.follower_id, "entry").inc()
        started = self._received_wall.pop(record["_id"], None)
        if started is not None:
            self.metrics.signal_to_first_order.labels(session.follower_id).observe(
                time.monotonic() - started
            )
        # Bookkeeping: the order is out, and whatever happens next (a crash
        # included) is settled from IB by its orderRef. In a burst this write
        # waits behind the reservations of followers whose orders are not out.
        record = await self._update(record, {"submitted": True, "perm_id": None}, urgent=False)
        log.info(
            "entry order sent",
            extra={
                "execution_id": record["_id"],
                "follower_id": session.follower_id,
                "order_id": order_id,
                "order_ref": record["order_ref"],
                "limit": limit,
                "qty": qty,
            },
        )
        return await self._ladder(record, session, trade)

    # -- with an order -----------------------------------------------------------------

    async def _resume_order(self, record: Record, session: Session) -> bool:
        """Adopt the order of a WORKING/PARTIAL record after a restart or reconnect."""
        if not await self.pool.wait_ready(session, self.config.reconnect_wait):
            # Still down: leave the record for reconciliation on reconnect.
            return True
        broker = session.broker
        try:
            await broker.refresh_open_orders()
        except GatewayUnavailable:
            return True
        trades = broker.trades_by_ref(record["order_ref"])
        live = [t for t in trades if broker.view(t).client_id == broker.client_id]
        trade = next((t for t in live if not broker.view(t).done), None)
        if trade is None and live:
            trade = max(live, key=lambda t: broker.view(t).filled)
        if trade is None and trades:
            trade = trades[0]
        if trade is None:
            filled = await self._filled_from_executions(broker, record["order_ref"])
            if filled is not None and filled > 0:
                # The order finished while we were away and only its
                # executions remain: settle the record from them.
                return await self._settle_from_executions(record, filled, broker)
            return await self._no_trace_at_ib(record, filled is None)
        log.info(
            "adopted working order after reconnect",
            extra={
                "execution_id": record["_id"],
                "order_ref": record["order_ref"],
                "order_id": trade.order.orderId,
            },
        )
        return await self._ladder(record, session, trade)

    async def _no_trace_at_ib(self, record: Record, executions_unknown: bool) -> bool:
        """An order-holding record whose order IB does not know: end it, send nothing.

        Two records lead here. ``submitted`` true: the order was sent and IB has
        neither an order nor an execution with its orderRef. ``submitted``
        false: the process stopped between reserving the order id (written
        first) and confirming the send (written after), so the order may or
        may not have left. The two cannot be told apart from IB's side with
        certainty (an order sent on a socket that then died leaves no trace;
        one sent from another client id is invisible to this session), and a
        second order for the same signal is the one failure this design
        exists to prevent. So both fail closed: no order is (re)sent, the
        execution ends FAILED, and a CRITICAL alert asks a person to look at
        the account. A person who still wants the trade sends a manual signal
        with a new ``signal_id`` (this one is spent: one record per signal and
        follower).
        """
        submitted = bool(record.get("submitted"))
        what = (
            "order was sent but IB has no trace of it"
            if submitted
            else "crash between recording the order and confirming its send; IB has no trace"
        )
        await self._end(
            record,
            S.FAILED,
            AlertType.GATEWAY_UNREACHABLE,
            f"{what}: not re-sending, check the account manually",
            {
                "order_ref": record["order_ref"],
                "order_id": record.get("order_id"),
                "submitted": submitted,
                "executions_unknown": executions_unknown,
                "error_code": None,
                "error_text": "no open order, completed order or execution with this orderRef",
            },
        )
        return True

    async def _ladder(self, record: Record, session: Session, trade: Trade) -> bool:
        """Walk the rungs on one order (modified in place) until filled or exhausted."""
        broker = session.broker
        ladder = record["ladder"]
        qty = int(record["qty"])
        rung = int(record.get("rung") or 0)
        cancel_requested = bool(record.get("cancel_requested"))
        try:
            while True:
                view = broker.view(trade)
                if view.filled >= qty:
                    return await self._filled(record, session, trade)
                record = await self._note_fills(record, view.filled)
                if view.done and not cancel_requested and rung > 0:
                    refused = await self._refused_modification(record, broker, trade, view)
                    if refused is not None:
                        # IB still works the order at the previous rung: pull it.
                        record = refused
                        cancel_requested = True
                        broker.cancel(trade)
                        continue
                if view.done:
                    return await self._order_ended(record, session, trade, cancel_requested)
                mode = self.modes.mode_for(session.follower_id)
                if not mode.allows_opening() and not cancel_requested:
                    record = await self._update(
                        record, {"cancel_requested": True, "cancel_reason": f"mode {mode.value}"}
                    )
                    cancel_requested = True
                    broker.cancel(trade)
                    continue
                if cancel_requested:
                    await self._wait_change(session, trade, self.config.cancel_wait)
                    if not broker.view(trade).done:
                        # No confirmation: ask again (idempotent) and re-check the state.
                        broker.cancel(trade)
                        await broker.refresh_open_orders()
                    continue
                started = _as_datetime(record.get("rung_started_at")) or self.clock.now()
                remaining = self.config.timeout_seconds - (
                    (self.clock.now() - started).total_seconds()
                )
                if remaining > 0:
                    await self._wait_change(session, trade, remaining)
                    continue
                if rung + 1 < len(ladder):
                    rung += 1
                    limit = assert_credit_limit(float(ladder[rung]["limit"]))
                    started_at = self.clock.now()
                    broker.modify_limit(trade, limit)
                    # Recorded right after the move, not before: a move changes
                    # the price of the one order, it never creates one, and the
                    # plan it follows was written before the order was sent. A
                    # crash in between leaves the record a rung behind IB; the
                    # resumed ladder then repeats this same limit (a no-op) and
                    # goes on. Writing first would put a database round trip
                    # inside every rung.
                    record = await self._advance(
                        record,
                        S(record["state"]),
                        {"rung": rung, "limit": limit, "rung_started_at": started_at},
                    )
                    self.metrics.order_modifications.labels(session.follower_id).inc()
                    log.info(
                        "ladder rung",
                        extra={
                            "execution_id": record["_id"],
                            "rung": rung,
                            "limit": limit,
                        },
                    )
                    continue
                # Last rung worked out: cancel the remainder.
                record = await self._update(
                    record, {"cancel_requested": True, "cancel_reason": "ladder exhausted"}
                )
                cancel_requested = True
                broker.cancel(trade)
        except GatewayUnavailable as exc:
            return await self._gateway_lost_mid_ladder(record, session, exc)

    async def _refused_modification(
        self, record: Record, broker: IBBroker, trade: Trade, view: OrderView
    ) -> Record | None:
        """After a rung move, tell "the order ended" from "IB refused the move".

        ib_async marks an order Cancelled on *any* order error, including a
        refused modification (error 201), although IB then keeps the order
        working at its previous price. Taking that local status at its word
        would end the execution while a live order, no longer tracked, can
        still fill. So IB is asked (open orders, which also restores the
        order's real status and limit locally); if it still works the order,
        the refusal is recorded and the caller cancels the order and waits for
        IB to confirm, and the execution ends REJECTED (nothing filled) or
        LIMIT_REACHED (partly filled) with a CRITICAL alert.

        Why cancel instead of working on at the previous rung: a broker that
        refuses one price change will most likely refuse the next, and every
        unconfirmed change is another moment where our view and IB's differ.
        One cancel, confirmed by IB, leaves nothing working that we do not
        know about. Returns the updated record, or None if the order really ended.
        """
        code, text = view.error_code, view.error_text
        await broker.refresh_open_orders()
        after = broker.view(trade)
        if after.done:
            return None
        rung = int(record.get("rung") or 0)
        working_limit = after.lmt_price
        log.error(
            "rung move refused by IB; order still working at its previous limit",
            extra={
                "execution_id": record["_id"],
                "rung": rung,
                "refused_limit": record.get("limit"),
                "working_limit": working_limit,
                "error_code": code,
            },
        )
        return await self._update(
            record,
            {
                "cancel_requested": True,
                "cancel_reason": f"modification rejected: {code} {text}".strip(),
                "modify_rejected": {
                    "rung": rung,
                    "refused_limit": record.get("limit"),
                    "error_code": code,
                    "error_text": text,
                },
                # What IB is actually working, not the refused rung.
                "rung": max(rung - 1, 0),
                "limit": working_limit if working_limit is not None else record.get("limit"),
            },
        )

    async def _wait_change(self, session: Session, trade: Trade, clock_seconds: float) -> None:
        """Wait for a status/fill change, the clock, or a disconnect; whichever is first."""
        if not session.connected:
            raise GatewayUnavailable("session dropped")
        status = asyncio.create_task(session.broker.wait_for_status(trade, wait_seconds=3600.0))
        sleeper = asyncio.create_task(self.clock.sleep(max(clock_seconds, 0.0)))
        dropped = asyncio.create_task(_wait_cleared(session))
        try:
            await asyncio.wait({status, sleeper, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (status, sleeper, dropped):
                t.cancel()
        if not session.connected:
            raise GatewayUnavailable("session dropped")

    async def _note_fills(self, record: Record, filled: float) -> Record:
        filled_int = int(filled)
        if filled_int <= int(record.get("filled_qty") or 0):
            return record
        state = S(record["state"])
        return (
            await self._advance(record, S.PARTIAL, {"filled_qty": filled_int})
            if (state in OPEN_ORDER_STATES)
            else record
        )

    async def _filled(self, record: Record, session: Session, trade: Trade) -> bool:
        view = session.broker.view(trade)
        combo_price: float | None = view.avg_fill_price or None
        if combo_price is None:
            combo_price = await self._combo_price_from_executions(
                session.broker, record["order_ref"]
            )
        fill_credit = -combo_price if combo_price is not None else None
        mid = record.get("mid_credit")
        natural = record.get("natural_credit")
        rung = int(record.get("rung") or 0)
        params = {
            "qty": int(record["qty"]),
            "filled_qty": int(view.filled),
            "fill_credit": _num(fill_credit),
            "combo_price": _num(combo_price),
            "rung": rung,
            "limit": record.get("limit"),
            "mid": mid,
            "natural": natural,
            "slippage_vs_mid": _num(mid - fill_credit)
            if mid is not None and fill_credit is not None
            else None,
            "slippage_vs_natural": _num(fill_credit - natural)
            if natural is not None and fill_credit is not None
            else None,
            "order_id": view.order_id,
            "order_ref": view.order_ref,
        }
        await self._end(
            record,
            S.FILLED,
            AlertType.EXECUTION_FILLED,
            f"filled {int(view.filled)} at credit {fill_credit} (rung {rung})",
            params,
            extra={
                "filled_qty": int(view.filled),
                "fill_credit": _num(fill_credit),
                "fill_price": _num(combo_price),
            },
        )
        self.metrics.rung_reached.labels(session.follower_id).observe(rung)
        return True

    async def _order_ended(
        self, record: Record, session: Session, trade: Trade, cancel_requested: bool
    ) -> bool:
        view = session.broker.view(trade)
        filled = int(view.filled)
        qty = int(record["qty"])
        rung = int(record.get("rung") or 0)
        ladder = record["ladder"]
        halted = cancel_requested and str(record.get("cancel_reason", "")).startswith("mode")
        if halted:
            if filled > 0:
                self._alert_partial_fill(
                    record,
                    session,
                    view,
                    f"partially filled {filled} of {qty} before the kill switch",
                    filled,
                    qty,
                )
            await self._end(
                record,
                S.FAILED,
                AlertType.KILL_SWITCH,
                f"entry cancelled by the kill switch ({record.get('cancel_reason')}); "
                f"{filled}/{qty} filled",
                {
                    "filled_qty": filled,
                    "qty": qty,
                    "rung": rung,
                    "final_limit": record.get("limit"),
                    "reason": record.get("cancel_reason"),
                },
                extra={"filled_qty": filled},
            )
            return True
        refused = record.get("modify_rejected")
        if refused and cancel_requested and filled == 0:
            await self._end(
                record,
                S.REJECTED,
                AlertType.GATEWAY_UNREACHABLE,
                f"IB refused the move to rung {refused.get('rung')} "
                f"({refused.get('error_code')} {refused.get('error_text')}); the order, still "
                f"working at {record.get('limit')}, was cancelled; nothing filled",
                {
                    "error_code": refused.get("error_code"),
                    "error_text": refused.get("error_text"),
                    "refused_rung": refused.get("rung"),
                    "refused_limit": refused.get("refused_limit"),
                    "final_limit": record.get("limit"),
                    "initial_limit": record.get("initial_limit", ladder[0]["limit"]),
                    "filled_qty": 0,
                    "qty": qty,
                    "order_id": view.order_id,
                    "order_ref": view.order_ref,
                    "status": view.status,
                },
                extra={"filled_qty": 0},
            )
            return True
        if cancel_requested or filled > 0:
            params = {
                "attempts": rung + 1,
                "initial_limit": record.get("initial_limit", ladder[0]["limit"]),
                "final_limit": record.get("limit"),
                "filled_qty": filled,
                "qty": qty,
                "reason": record.get("cancel_reason") or view.status,
            }
            if refused:
                params["error_code"] = refused.get("error_code")
                params["error_text"] = refused.get("error_text")
            if filled > 0:
                self._alert_partial_fill(
                    record, session, view, f"partially filled {filled} of {qty}", filled, qty
                )
            await self._end(
                record,
                S.LIMIT_REACHED,
                AlertType.LIMIT_REACHED,
                f"not filled after {rung + 1} rung(s); remainder cancelled ({filled}/{qty} filled)",
                params,
                extra={"filled_qty": filled},
            )
            self.metrics.rung_reached.labels(session.follower_id).observe(rung)
            return True
        # Done without a fill seen and without our cancel. An order adopted from
        # IB's completed orders may lack fill figures: executions decide.
        executed = await self._filled_from_executions(session.broker, record["order_ref"])
        if executed:
            return await self._settle_from_executions(record, executed, session.broker)
        await self._end(
            record,
            S.REJECTED,
            AlertType.GATEWAY_UNREACHABLE,
            f"order rejected by IB: {view.error_code} {view.error_text}".strip(),
            {
                "error_code": view.error_code,
                "error_text": view.error_text,
                "status": view.status,
                "order_id": view.order_id,
                "order_ref": view.order_ref,
            },
        )
        return True

    async def _gateway_lost_mid_ladder(
        self, record: Record, session: Session, exc: BrokerError
    ) -> bool:
        """The order exists at IB; wait for the session and re-adopt it, never re-send."""
        self._alert(
            AlertType.GATEWAY_UNREACHABLE,
            f"gateway lost mid-ladder: {exc.text}; order left working at its last limit",
            {
                "error_code": exc.code,
                "error_text": exc.text,
                "order_ref": record["order_ref"],
                "rung": record.get("rung"),
            },
            session.follower_id,
            alert_id=f"{record['_id']}:lost:{session.connects}",
        )
        # Back in time: drive again (False), and _resume_order adopts the order by
        # orderRef. Still down: stop (True); reconciliation resumes it on reconnect.
        return not await self.pool.wait_ready(session, self.config.reconnect_wait)

    async def _filled_from_executions(self, broker: IBBroker, order_ref: str) -> float | None:
        try:
            fills = [f for f in await broker.executions() if f.order_ref == order_ref]
        except BrokerError:
            return None
        if not fills:
            return 0.0
        bag = [f for f in fills if f.sec_type == "BAG"]
        if bag:
            return sum(f.shares for f in bag)
        per_leg: dict[int, float] = {}
        for f in fills:
            per_leg[f.con_id] = per_leg.get(f.con_id, 0.0) + f.shares
        return min(per_leg.values()) if len(per_leg) >= 2 else 0.0

    async def _combo_price_from_executions(self, broker: IBBroker, order_ref: str) -> float | None:
        """Average combo price per unit from leg executions (BUY legs minus SELL legs)."""
        try:
            fills = [f for f in await broker.executions() if f.order_ref == order_ref]
        except BrokerError:
            return None
        legs = [f for f in fills if f.sec_type != "BAG"]
        units = await self._filled_from_executions(broker, order_ref)
        if not legs or not units:
            return None
        cash = sum((f.price if f.side in ("BOT", "BUY") else -f.price) * f.shares for f in legs)
        return round(cash / units, 4)

    async def _settle_from_executions(
        self, record: Record, filled: float, broker: IBBroker
    ) -> bool:
        qty = int(record["qty"])
        if filled < qty:
            record = await self._note_fills(record, filled)
        if filled >= qty:
            combo_price = await self._combo_price_from_executions(broker, record["order_ref"])
            fill_credit = -combo_price if combo_price is not None else None
            await self._end(
                record,
                S.FILLED,
                AlertType.EXECUTION_FILLED,
                f"filled {int(filled)} at credit {fill_credit} (found in executions)",
                {
                    "qty": qty,
                    "filled_qty": int(filled),
                    "rung": record.get("rung"),
                    "fill_credit": _num(fill_credit),
                    "combo_price": _num(combo_price),
                    "mid": record.get("mid_credit"),
                    "natural": record.get("natural_credit"),
                },
                extra={
                    "filled_qty": int(filled),
                    "fill_credit": _num(fill_credit),
                    "fill_price": _num(combo_price),
                },
            )
        else:
            await self._end(
                record,
                S.LIMIT_REACHED,
                AlertType.LIMIT_REACHED,
                f"order ended while away, {int(filled)}/{qty} filled",
                {
                    "attempts": int(record.get("rung") or 0) + 1,
                    "initial_limit": record.get("initial_limit"),
                    "final_limit": record.get("limit"),
                    "filled_qty": int(filled),
                    "qty": qty,
                },
                extra={"filled_qty": int(filled)},
            )
        return True

    # -- failure paths -------------------------------------------------------------------

    async def _gateway_down_before_order(
        self,
        record: Record,
        session: Session,
        exc: BrokerError | None = None,
        via: Sequence[Step] = (),
    ) -> None:
        text = exc.text if exc else (session.last_error or "session not ready")
        await self._end(
            record,
            S.FAILED,
            AlertType.GATEWAY_UNREACHABLE,
            f"gateway unreachable, no order sent: {text}",
            {
                "error_code": exc.code if exc else None,
                "error_text": text,
                "host": session.follower.gateway.host,
                "port": session.follower.gateway.port,
            },
            via=via,
        )

    async def _fail_no_session(self, execution_id: str, follower_id: str) -> None:
        record = await self.store.get(execution_id)
        if record is None or is_terminal(S(record["state"])):
            return
        if S(record["state"]) in OPEN_ORDER_STATES:
            return  # an order may exist; leave it to reconciliation
        await self._end(
            record,
            S.FAILED,
            AlertType.GATEWAY_UNREACHABLE,
            "no gateway session for this follower",
            {"error_code": None, "error_text": "no session"},
        )

    async def _fail_unexpected(self, execution_id: str, follower_id: str) -> None:
        try:
            record = await self.store.get(execution_id)
        except StoreUnavailable:
            return
        if record is None or is_terminal(S(record["state"])):
            return
        if S(record["state"]) in OPEN_ORDER_STATES:
            self._alert(
                AlertType.GATEWAY_UNREACHABLE,
                "unexpected error while an order is working; left for reconciliation",
                {"order_ref": record.get("order_ref")},
                follower_id,
                alert_id=f"{execution_id}:unexpected",
            )
            return
        with contextlib.suppress(Exception):
            await self._end(
                record,
                S.FAILED,
                AlertType.GATEWAY_UNREACHABLE,
                "unexpected error before any order was sent; nothing sent",
                {"error_code": None, "error_text": "internal error"},
            )

    # -- record helpers -------------------------------------------------------------------

    async def _advance(
        self,
        record: Record,
        target: ExecutionState,
        fields: Record,
        via: Sequence[Step] = (),
        *,
        urgent: bool = True,
    ) -> Record:
        """Compare-and-set the record to ``target`` (an illegal move raises, nothing is written).

        ``via``: steps taken since the record was last written, written first.
        ``urgent=False``: bookkeeping that gates no broker call (see the store).
        """
        try:
            return await self.store.advance(
                record, target, fields, self.clock.now(), via, urgent=urgent
            )
        except (IllegalTransition, StaleRecord):
            log.error(
                "execution record refused the step",
                extra={
                    "execution_id": record["_id"],
                    "from": record["state"],
                    "to": target.value,
                },
            )
            raise

    async def _update(self, record: Record, fields: Record, *, urgent: bool = True) -> Record:
        """Change fields without changing state (still compare-and-set)."""
        return await self._advance(record, S(record["state"]), fields, urgent=urgent)

    async def _end(
        self,
        record: Record,
        state: ExecutionState,
        alert_type: AlertType,
        message: str,
        params: dict[str, Any],
        *,
        severity: Severity | None = None,
        extra: Record | None = None,
        via: Sequence[Step] = (),
    ) -> None:
        signal = record.get("signal") or {}
        full = {
            "execution_id": record["_id"],
            "signal_id": record.get("signal_id"),
            "strategy": signal.get("strategy"),
            "strike_long": signal.get("strike_long"),
            "strike_short": signal.get("strike_short"),
            **params,
        }
        current = via[-1].state if via else S(record["state"])
        if not can_transition(current, state):
            # A resumed execution can meet an end its current state cannot
            # reach (a margin failure after MARGIN_OK was recorded, say). It
            # still ends, as FAILED, with the alert it deserves.
            full["intended_state"] = state.value
            state = S.FAILED
        fields = {"reason": message, "ended_at": self.clock.now(), **(extra or {})}
        await self._advance(record, state, fields, via)
        self.metrics.executions_ended.labels(record["follower_id"], state.value).inc()
        self._alert(
            alert_type,
            message,
            full,
            record["follower_id"],
            severity=severity,
            alert_id=f"{record['_id']}:{alert_type.value}",
        )
        log.info(
            "execution ended",
            extra={
                "execution_id": record["_id"],
                "follower_id": record["follower_id"],
                "state": state.value,
            },
        )

    def _alert_partial_fill(
        self,
        record: Record,
        session: Session,
        view: OrderView,
        message: str,
        filled: int,
        qty: int,
    ) -> None:
        """The PARTIAL_FILL alert for an entry that ended with ``filled`` of ``qty``."""
        self._alert(
            AlertType.PARTIAL_FILL,
            message,
            {"filled_qty": filled, "qty": qty, "order_ref": view.order_ref},
            session.follower_id,
            alert_id=f"{record['_id']}:{AlertType.PARTIAL_FILL.value}",
        )

    def _alert(
        self,
        alert_type: AlertType,
        message: str,
        params: dict[str, Any],
        follower_id: str | None,
        *,
        severity: Severity | None = None,
        alert_id: str | None = None,
    ) -> None:
        alert = Alert.create(
            alert_type,
            severity,
            message,
            params,
            self.clock.now(),
            follower_id=follower_id,
            id=alert_id,
        )
        try:
            self.alerts.publish(alert)
        except Exception:
            log.exception("alert publish failed", extra={"alert_type": alert_type.value})

    async def _open_spread_count(self, broker: IBBroker) -> int:
        positions = await broker.positions()
        spreads, _ = group_spreads(to_domain_positions(positions))
        keys = {(s.long.key, s.short.key) for s in spreads}
        return len(keys)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


async def _wait_cleared(session: Session) -> None:
    await session.disconnected_event.wait()


def to_domain_positions(positions: list[Any]) -> list[Position]:
    """Broker positions -> the domain's grouping input (QQQ options and stock)."""
    from datetime import date as _date

    from spreadpilot.domain.spreads import Right

    out: list[Position] = []
    for p in positions:
        qty = round(p.quantity)
        if qty == 0:
            continue
        if p.sec_type == "OPT" and p.right in ("C", "P") and p.expiry:
            exp = p.expiry[:8]
            out.append(
                Position.option(
                    str(p.con_id),
                    Right(p.right),
                    float(p.strike),
                    _date(int(exp[:4]), int(exp[4:6]), int(exp[6:8])),
                    qty,
                    symbol=p.symbol,
                )
            )
        elif p.sec_type == "STK":
            out.append(Position.stock(str(p.con_id), qty, symbol=p.symbol))
    return out


__all__ = ["Executor", "ExecutorConfig", "to_domain_positions"]


def _no_margin_message(check: MarginCheck, qty: int) -> str:
    """The NO_MARGIN text with the figures, so the person reading it needs no lookup.

    The figures are in the alert's params too, but Telegram and e-mail show the
    message; "not enough margin" alone would send someone to IB to find out by
    how much. An unknown figure (IB sent none) reads "unknown": the check
    failed closed on it.
    """

    def money(value: float | None) -> str:
        return "unknown" if value is None else f"${value:,.2f}"

    figures = check.as_params()
    return (
        f"not enough margin for {qty} spreads: initial margin change "
        f"{money(figures['init_margin_change'])}, available funds "
        f"{money(figures['available_funds'])}, equity with loan after "
        f"{money(figures['equity_with_loan_after'])}; no order"
    )
