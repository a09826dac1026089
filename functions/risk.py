"""tv_monitor: the time-value risk check of every open spread (SPEC section 4).

Each run (one a minute in market hours) asks every sidecar for its followers'
positions with quotes, and applies the domain's TV rules *here* (the
sidecar's own status is not trusted: one set of thresholds, ours):

- status per spread = its short leg's: CRITICAL (TV <= TV_CRITICAL), RISK
  (TV <= TV_RISK), SAFE; kept in the Redis hash ``tv:{follower_id}`` (field =
  spread id, TTL) so the next run knows the previous status;
- every status is published (TV_SAFE/TV_RISK/TV_CRITICAL with the figures) to
  the alerts stream and topic; only a *change* of status carries the type's
  severity and so reaches people. Unchanged statuses are published as INFO,
  which the default routing keeps off Telegram: a RISK spread would otherwise
  page someone every minute;
- CRITICAL: ``POST /liquidate`` (one combo market order for both legs), then
  TV_LIQUIDATED with the fill. The sidecar raises TV_LIQUIDATED too, with the
  same id, so people get one. A failed liquidation is CRITICAL and is tried
  again next run (the status stays CRITICAL in Redis);
- assignment: a long leg whose short is gone, or QQQ stock, is
  ASSIGNMENT_DETECTED (once per position, remembered in ``assign:{follower_id}``),
  and the system resolves it at once: ``POST /flatten`` closes that one
  position with one market order (the stock first, so a protective long leg
  is never sold while the shares it hedges are still held), then
  ASSIGNMENT_RESOLVED with the fill (the sidecar raises it too, with the same
  id). A flatten that fails is CRITICAL and is tried again next run. A
  position that goes away by other means (a person closed it) is
  ASSIGNMENT_RESOLVED when it is seen gone. A short without its long is
  LEGGED_POSITION, left for a person (SPEC 3.8).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from spreadpilot.adapters.sidecar_client import (
    FollowerPositions,
    OrphanPosition,
    SidecarRefused,
    SidecarReply,
    SidecarUnavailable,
    SpreadPosition,
)
from spreadpilot.clock import Clock, now_new_york
from spreadpilot.domain import calendar
from spreadpilot.domain.alerts import Alert, AlertType, Severity
from spreadpilot.domain.followers import Follower
from spreadpilot.domain.spreads import Right
from spreadpilot.domain.timevalue import TvStatus, intrinsic, spread_status, time_value

log = logging.getLogger(__name__)


class PositionsPort(Protocol):
    def all_positions(self) -> list[FollowerPositions]: ...

    def liquidate(self, body: Mapping[str, Any]) -> SidecarReply: ...

    def flatten(self, body: Mapping[str, Any]) -> SidecarReply: ...


class FollowerDirectory(Protocol):
    def list_enabled(self) -> list[Follower]: ...


class AlertSink(Protocol):
    def publish(self, alert: Alert) -> object: ...

    def publish_many(self, alerts: Sequence[Alert]) -> object: ...


class StatusStore(Protocol):
    """The Redis commands the monitor uses (``redis.Redis`` with str responses)."""

    def hgetall(self, name: str) -> Any: ...

    def hset(self, name: str, key: str | None = ..., value: str | None = ..., **kw: Any) -> Any: ...

    def hdel(self, name: str, *keys: str) -> Any: ...

    def expire(self, name: str, time: int) -> Any: ...


@dataclass(frozen=True)
class Thresholds:
    critical: float = 0.10
    risk: float = 1.00


@dataclass
class TvReport:
    checked: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    liquidated: list[str] = field(default_factory=list)
    liquidation_failed: dict[str, str] = field(default_factory=dict)
    assignments: list[str] = field(default_factory=list)
    flattened: list[str] = field(default_factory=list)
    flatten_failed: dict[str, str] = field(default_factory=dict)
    resolved: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    market_closed: bool = False

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    def absorb(self, other: TvReport) -> None:
        """Add ``other`` (one follower's check) to this report."""
        self.checked += other.checked
        self.statuses.update(other.statuses)
        self.changes += other.changes
        self.liquidated += other.liquidated
        self.liquidation_failed.update(other.liquidation_failed)
        self.assignments += other.assignments
        self.flattened += other.flattened
        self.flatten_failed.update(other.flatten_failed)
        self.resolved += other.resolved
        self.unreachable.update(other.unreachable)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class TvMonitor:
    followers: FollowerDirectory
    sidecar_for: Callable[[str], PositionsPort]
    default_sidecar_url: str
    redis: StatusStore
    alerts: AlertSink
    clock: Clock
    thresholds: Thresholds = field(default_factory=Thresholds)
    status_ttl_seconds: int = 300
    #: followers checked at the same time (each may wait on a liquidation)
    max_parallel: int = 8
    #: status events raised but not yet published (see ``_flush_alerts``); per
    #: thread, because the instance is shared by concurrent invocations
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def run(self, *, force: bool = False) -> TvReport:
        try:
            return self._run(force=force)
        finally:
            self._flush_alerts()

    def _run(self, *, force: bool) -> TvReport:
        report = TvReport()
        now = self.clock.now()
        if not force and not calendar.is_market_open(now):
            report.market_closed = True
            return report
        by_sidecar: dict[str, set[str]] = {}
        for follower in self.followers.list_enabled():
            url = follower.sidecar_url or self.default_sidecar_url
            by_sidecar.setdefault(url, set()).add(follower.id)
        for url, follower_ids in sorted(by_sidecar.items()):
            sidecar = self.sidecar_for(url)
            try:
                everyone = sidecar.all_positions()
            except (SidecarUnavailable, SidecarRefused) as exc:
                for fid in follower_ids:
                    report.unreachable[fid] = str(exc)
                log.warning("positions unavailable from %s: %s", url, exc)
                continue
            mine = []
            for positions in everyone:
                if positions.follower_id not in follower_ids:
                    continue  # served there, but not (or no longer) enabled
                if positions.error is not None:
                    report.unreachable[positions.follower_id] = positions.error
                    continue
                mine.append(positions)
            # Followers with nothing to do at the sidecar are checked here, their
            # status events published in one batch at the end; the others each
            # on a worker of their own (see ``_check_followers``).
            acting = [p for p in mine if self._needs_action(p)]
            busy = {p.follower_id for p in acting}
            for positions in mine:
                if positions.follower_id not in busy:
                    self._check_follower(positions, sidecar, now, report)
            for part in self._check_followers(acting, sidecar, now):
                report.absorb(part)
        return report

    def _needs_action(self, positions: FollowerPositions) -> bool:
        """A CRITICAL spread to liquidate or a lone leg to look at."""
        if positions.orphans:
            return True
        for spread in positions.spreads:
            tv = _short_tv(spread, positions.underlying_mid)
            if tv is not None and (
                spread_status(tv, self.thresholds.critical, self.thresholds.risk)
                is TvStatus.CRITICAL
            ):
                return True
        return False

    def _check_followers(
        self, everyone: Sequence[FollowerPositions], sidecar: PositionsPort, now: datetime
    ) -> list[TvReport]:
        """Check each follower that must act on its own worker; one report each.

        Why in parallel: a CRITICAL spread waits for its liquidation's fill
        (a combo market order, a sidecar round trip and the gateway's answer).
        Checked one after the other, the last follower's liquidation would
        wait for everyone else's; SPEC 1 wants one follower's trouble never
        to delay another's. Each worker publishes its own queued status
        events, in order, before it ends.
        """

        def one(positions: FollowerPositions) -> TvReport:
            part = TvReport()
            try:
                self._check_follower(positions, sidecar, now, part)
            finally:
                self._flush_alerts()
            return part

        if len(everyone) <= 1 or self.max_parallel <= 1:
            return [one(p) for p in everyone]
        workers = min(self.max_parallel, len(everyone))
        with ThreadPoolExecutor(workers, thread_name_prefix="tv-check") as pool:
            return list(pool.map(one, everyone))

    # -- one follower ------------------------------------------------------------
    def _check_follower(
        self, positions: FollowerPositions, sidecar: PositionsPort, now: datetime, report: TvReport
    ) -> None:
        fid = positions.follower_id
        key = f"tv:{fid}"
        previous = {_text(k): _text(v) for k, v in (self.redis.hgetall(key) or {}).items()}
        seen: set[str] = set()
        for spread in positions.spreads:
            report.checked += 1
            tv = _short_tv(spread, positions.underlying_mid)
            if tv is None:
                log.warning("no TV for %s %s (missing quote)", fid, spread.spread_id)
                continue
            status = spread_status(tv, self.thresholds.critical, self.thresholds.risk)
            seen.add(spread.spread_id)
            label = f"{fid}:{spread.spread_id}"
            report.statuses[label] = status.value
            before = (
                json.loads(previous[spread.spread_id])["status"]
                if spread.spread_id in previous
                else None
            )
            changed = before != status.value
            if changed:
                report.changes.append(f"{label}:{before or 'NEW'}->{status.value}")
            figures = _figures(spread, positions.underlying_mid, tv, self.thresholds)
            self.redis.hset(
                key,
                spread.spread_id,
                json.dumps({**figures, "status": status.value, "at": now.isoformat()}),
            )
            self._status_alert(fid, spread, status, before, changed, figures, now)
            if status is TvStatus.CRITICAL:
                self._liquidate(fid, spread, sidecar, figures, now, report)
        stale = [k for k in previous if k not in seen]
        if stale:
            self.redis.hdel(key, *stale)
        self.redis.expire(key, self.status_ttl_seconds)
        self._assignments(fid, positions.orphans, sidecar, now, report)

    def _flush_alerts(self) -> None:
        """Publish the queued status events in one batch.

        Why queued: one status event per spread per run, and a confirmed
        Pub/Sub publish waits ~12 ms (the client's batching) each, serially;
        over 200 followers that was most of the cycle. Batched, the wait is
        paid once per chunk. The publisher keeps its never-raise and bounded
        buffer semantics; the order is kept because every other alert and
        every order sent to a sidecar flushes the queue first.
        """
        batch = self._pending
        if not batch:
            return
        self._local.pending = []
        try:
            self.alerts.publish_many(batch)
        except Exception:  # the publisher never raises; a stand-in might
            log.exception("publishing %d status events failed", len(batch))

    @property
    def _pending(self) -> list[Alert]:
        pending: list[Alert] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    def _publish(self, alert: Alert) -> None:
        """Publish one alert now, after the status events queued before it."""
        self._flush_alerts()
        self.alerts.publish(alert)

    def _status_alert(
        self,
        fid: str,
        spread: SpreadPosition,
        status: TvStatus,
        before: str | None,
        changed: bool,
        figures: dict[str, Any],
        now: datetime,
    ) -> None:
        minute = now.strftime("%Y%m%dT%H%M")
        self._pending.append(
            Alert.create(
                status.alert_type,
                None if changed else Severity.INFO,
                f"{spread.spread_id} time value {figures['tv']:.2f}: {status.value}"
                + (f" (was {before})" if changed and before else ""),
                {**figures, "previous_status": before, "changed": changed},
                now,
                follower_id=fid,
                id=f"tv-{fid}-{spread.spread_id}-{status.value}-{minute}",
            )
        )

    def _liquidate(
        self,
        fid: str,
        spread: SpreadPosition,
        sidecar: PositionsPort,
        figures: dict[str, Any],
        now: datetime,
        report: TvReport,
    ) -> None:
        # The CRITICAL status event reaches people before the liquidation is tried.
        self._flush_alerts()
        label = f"{fid}:{spread.spread_id}"
        body = {"follower_id": fid, "spread_id": spread.spread_id, "reason": "TV_CRITICAL"}
        try:
            result = sidecar.liquidate(body).body or {}
        except (SidecarUnavailable, SidecarRefused) as exc:
            report.liquidation_failed[label] = str(exc)
            self._liquidation_failed(fid, spread, figures, str(exc), now)
            return
        if result.get("status") != "FILLED":
            reason = f"status {result.get('status')}: {result.get('error') or 'not filled'}"
            report.liquidation_failed[label] = reason
            self._liquidation_failed(fid, spread, figures, reason, now)
            return
        report.liquidated.append(label)
        self._publish(
            Alert.create(
                AlertType.TV_LIQUIDATED,
                None,
                f"closed {spread.spread_id} x{result.get('qty')} at {result.get('avg_price')}",
                {**result, **figures, "reason": "TV_CRITICAL"},
                now,
                follower_id=fid,
                # The sidecar raises the same alert with this id: one reaches people.
                id=f"{result.get('order_ref')}:{AlertType.TV_LIQUIDATED.value}",
            )
        )

    def _liquidation_failed(
        self, fid: str, spread: SpreadPosition, figures: dict[str, Any], reason: str, now: datetime
    ) -> None:
        self._publish(
            Alert.create(
                AlertType.TV_CRITICAL,
                Severity.CRITICAL,
                f"liquidation of {spread.spread_id} failed ({reason}); retrying next cycle",
                {**figures, "liquidation_error": reason},
                now,
                follower_id=fid,
                id=f"tv-liq-failed-{fid}-{spread.spread_id}-{now.strftime('%Y%m%dT%H%M')}",
            )
        )

    def _assignments(
        self,
        fid: str,
        orphans: Sequence[OrphanPosition],
        sidecar: PositionsPort,
        now: datetime,
        report: TvReport,
    ) -> None:
        key = f"assign:{fid}"
        known = {_text(k): _text(v) for k, v in (self.redis.hgetall(key) or {}).items()}
        current: dict[str, OrphanPosition] = {}
        for orphan in orphans:
            current[f"{orphan.kind}:{orphan.con_id}"] = orphan
        day = now_new_york(self.clock).date().isoformat()
        for ident, orphan in current.items():
            if ident in known:
                continue
            assignment = orphan.kind in ASSIGNMENT_KINDS
            kind = AlertType.ASSIGNMENT_DETECTED if assignment else AlertType.LEGGED_POSITION
            description = _orphan_text(orphan)
            entry = {"kind": orphan.kind, "at": now.isoformat()}
            self.redis.hset(key, ident, json.dumps(entry))
            known[ident] = json.dumps(entry)
            report.assignments.append(f"{fid}:{ident}")
            self._publish(
                Alert.create(
                    kind,
                    Severity.CRITICAL,
                    f"{description}: "
                    + (
                        "an assignment; flattening it"
                        if assignment
                        else "a short leg without its hedge"
                    ),
                    _orphan_params(orphan),
                    now,
                    follower_id=fid,
                    id=f"orphan-{fid}-{ident}-{day}",
                )
            )
        # The system's own resolution, stock first (see the module docstring).
        pending = [
            (ident, orphan)
            for ident, orphan in current.items()
            if orphan.kind in ASSIGNMENT_KINDS and not json.loads(known[ident]).get("flattened")
        ]
        pending.sort(key=lambda item: item[1].kind != "STOCK_POSITION")
        for ident, orphan in pending:
            entry = json.loads(known[ident])
            closed = self._flatten(fid, ident, orphan, entry, sidecar, now, report)
            if not closed and orphan.kind == "STOCK_POSITION":
                break  # the stock is still held: keep its protective leg until it is gone
        for ident, raw in known.items():
            if ident in current:
                continue
            self.redis.hdel(key, ident)
            entry = json.loads(raw)
            if entry.get("kind") in ASSIGNMENT_KINDS and not entry.get("flattened"):
                # Closed by something else than our flatten (a person, an expiry).
                report.resolved.append(f"{fid}:{ident}")
                self._publish(
                    Alert.create(
                        AlertType.ASSIGNMENT_RESOLVED,
                        None,
                        f"assignment position {ident} is closed",
                        {"position": ident},
                        now,
                        follower_id=fid,
                        id=f"resolved-{fid}-{ident}-{day}",
                    )
                )

    def _flatten(
        self,
        fid: str,
        ident: str,
        orphan: OrphanPosition,
        entry: dict[str, Any],
        sidecar: PositionsPort,
        now: datetime,
        report: TvReport,
    ) -> bool:
        """``POST /flatten`` for one assignment position; True when it is closed."""
        self._flush_alerts()  # what was raised before reaches people before the order
        label = f"{fid}:{ident}"
        body = {
            "follower_id": fid,
            "kind": orphan.kind,
            "con_id": orphan.con_id,
            "reason": "ASSIGNMENT",
        }
        try:
            result = sidecar.flatten(body).body or {}
        except SidecarRefused as exc:
            if exc.status == 404:
                # Already gone (IB closed it, or a person did): the next run sees it
                # gone and resolves it; no order was sent.
                return True
            return self._flatten_failed(fid, ident, orphan, str(exc), now, report)
        except SidecarUnavailable as exc:
            return self._flatten_failed(fid, ident, orphan, str(exc), now, report)
        if result.get("status") != "FILLED":
            reason = f"status {result.get('status')}: {result.get('error') or 'not filled'}"
            return self._flatten_failed(fid, ident, orphan, reason, now, report)
        self.redis.hset(
            f"assign:{fid}",
            ident,
            json.dumps(
                {**entry, "flattened": result.get("order_ref"), "flattened_at": now.isoformat()}
            ),
        )
        report.flattened.append(label)
        report.resolved.append(label)
        self._publish(
            Alert.create(
                AlertType.ASSIGNMENT_RESOLVED,
                None,
                f"{_orphan_text(orphan)}: flattened, {result.get('action')} "
                f"{result.get('qty')} at {result.get('avg_price')}",
                {**_orphan_params(orphan), "flatten": result},
                now,
                follower_id=fid,
                # The sidecar raises the same alert with this id: one reaches people.
                id=f"{result.get('order_ref')}:{AlertType.ASSIGNMENT_RESOLVED.value}",
            )
        )
        return True

    def _flatten_failed(
        self,
        fid: str,
        ident: str,
        orphan: OrphanPosition,
        reason: str,
        now: datetime,
        report: TvReport,
    ) -> bool:
        report.flatten_failed[f"{fid}:{ident}"] = reason
        self._publish(
            Alert.create(
                AlertType.ASSIGNMENT_DETECTED,
                Severity.CRITICAL,
                f"{_orphan_text(orphan)}: flatten failed ({reason}); retrying next cycle",
                {**_orphan_params(orphan), "flatten_error": reason},
                now,
                follower_id=fid,
                id=f"flatten-failed-{fid}-{ident}-{now.strftime('%Y%m%dT%H%M')}",
            )
        )
        return False


ASSIGNMENT_KINDS = frozenset({"SHORT_LEG_MISSING", "STOCK_POSITION"})


def _orphan_params(orphan: OrphanPosition) -> dict[str, Any]:
    return {
        "kind": orphan.kind,
        "con_id": orphan.con_id,
        "sec_type": orphan.sec_type,
        "right": orphan.right,
        "strike": orphan.strike,
        "expiry": orphan.expiry.isoformat() if orphan.expiry else None,
        "qty": orphan.qty,
    }


def _short_tv(spread: SpreadPosition, underlying_mid: float | None) -> float | None:
    leg = spread.short
    if leg.mid is None or underlying_mid is None:
        return None
    return time_value(leg.mid, Right(leg.right), leg.strike, underlying_mid)


def _figures(
    spread: SpreadPosition, underlying_mid: float | None, tv: float, th: Thresholds
) -> dict[str, Any]:
    short = spread.short
    assert underlying_mid is not None
    return {
        "spread_id": spread.spread_id,
        "qty": spread.qty,
        "underlying": underlying_mid,
        "short_strike": short.strike,
        "short_right": short.right,
        "short_mid": short.mid,
        "intrinsic": intrinsic(Right(short.right), short.strike, underlying_mid),
        "tv": round(tv, 4),
        "tv_critical": th.critical,
        "tv_risk": th.risk,
    }


def _orphan_text(orphan: OrphanPosition) -> str:
    if orphan.sec_type == "STK":
        return f"{orphan.qty} QQQ shares held"
    return f"{orphan.qty} x QQQ {orphan.strike:g}{orphan.right} {orphan.expiry} unpaired"
