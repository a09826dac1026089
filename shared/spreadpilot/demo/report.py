"""The demo report: ``index.html`` (self-contained) plus every chart as a PNG.

The page must open from a file on a machine with no network, so there is no
script, stylesheet or font from elsewhere: charts are PNGs drawn by
matplotlib, written next to the page and also embedded in it as base64.
Every figure on the page comes from :mod:`spreadpilot.demo.data`, i.e. from
the databases and the alert sink, never from the demo's own expectations.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from spreadpilot.clock import NEW_YORK
from spreadpilot.demo.data import DemoData, FollowerDay, is_routine_tv

SEVERITY_COLOURS = {"CRITICAL": "#c0392b", "WARNING": "#e67e22", "INFO": "#2980b9"}
STATUS_COLOURS = {"SAFE": "#27ae60", "RISK": "#e67e22", "CRITICAL": "#c0392b"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ny(moment: datetime) -> datetime:
    # matplotlib draws aware datetimes in their own zone once naive; use NY wall time.
    return moment.astimezone(NEW_YORK).replace(tzinfo=None)


def _time_axis(ax: Any, data: DemoData) -> None:
    import matplotlib.dates as mdates

    day = data.trading_date
    ax.set_xlim(
        datetime(day.year, day.month, day.day, 9, 25),
        datetime(day.year, day.month, day.day, 16, 35),
    )
    ax.xaxis.set_major_locator(mdates.HourLocator())  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    ax.grid(True, alpha=0.3)


def _money(value: Decimal | float | None) -> str:
    if value is None:
        return "-"
    return f"{float(value):+,.2f}"


def _price(value: float | Decimal | None) -> str:
    return "-" if value is None else f"{float(value):.2f}"


class Chart:
    """A rendered chart: its file name and PNG bytes."""

    def __init__(self, name: str, title: str, png: bytes) -> None:
        self.name = name
        self.title = title
        self.png = png

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _save(fig: Any, name: str, title: str) -> Chart:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Chart(name, title, buffer.getvalue())


def _liquidation_time(day: FollowerDay) -> datetime | None:
    """When the TV liquidation *filled*: the execution time of its order's fills.

    Not the alert's ``created_at``: tv_monitor raises TV_LIQUIDATED with the
    time its check *started* (the same alert id as the sidecar's), and on a
    compressed clock a check that waits on the sidecar can start many
    simulated seconds before the fill, so a marker drawn from the alert does
    not line up with the realized P&L step the fill makes. The alert's time
    is the fallback when the fills are not there (e.g. not yet written).
    """
    alerts = [a for a in day.alerts if a["type"] == "TV_LIQUIDATED"]
    refs = {str((a.get("params") or {}).get("order_ref") or "") for a in alerts} - {""}
    fill_times = [f.exec_time for f in day.fills if f.order_ref in refs]
    if fill_times:
        return min(fill_times)
    if alerts:
        return datetime.fromisoformat(str(alerts[0]["created_at"]).replace("Z", "+00:00"))
    return None


def pnl_chart(data: DemoData, day: FollowerDay) -> Chart:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    if day.intraday:
        times = [_ny(s.snapshot_time) for s in day.intraday]
        ax.plot(
            times, [float(s.total) for s in day.intraday], color="#2c3e50", lw=1.8, label="total"
        )
        ax.plot(
            times,
            [float(s.realized) for s in day.intraday],
            color="#27ae60",
            lw=1,
            ls="--",
            label="realized",
        )
        ax.plot(
            times,
            [float(s.unrealized) for s in day.intraday],
            color="#8e44ad",
            lw=1,
            ls=":",
            label="unrealized",
        )
    else:
        ax.text(0.5, 0.5, "no position, no P&L", transform=ax.transAxes, ha="center", color="grey")
    liquidated = _liquidation_time(day)
    if liquidated is not None:
        ax.axvline(_ny(liquidated), color="#c0392b", lw=1, alpha=0.7)
        ax.annotate(
            "TV liquidation",
            (_ny(liquidated), 0),
            xytext=(4, 6),
            textcoords="offset points",
            color="#c0392b",
            fontsize=8,
        )
    if day.daily is not None:
        ax.axhline(float(day.daily.total), color="#2c3e50", lw=0.6, alpha=0.4)
    ax.axhline(0, color="black", lw=0.6)
    _time_axis(ax, data)
    final = _money(day.pnl)
    ax.set_title(f"{day.name}: P&L over the day (daily total {final} USD)", fontsize=10)
    ax.set_ylabel("USD")
    if day.intraday:
        ax.legend(loc="upper left", fontsize=8)
    return _save(fig, f"pnl-{day.follower_id}.png", f"P&L of {day.name}")


def ladder_chart(data: DemoData, day: FollowerDay) -> Chart | None:
    ex = day.execution
    if ex is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    rungs = list(range(len(ex.ladder)))
    reached = ex.rung if ex.rung is not None else -1
    if ex.ladder:
        ax.plot(rungs, ex.ladder, "o", color="#bdc3c7", ms=5, label="planned rungs")
        worked = [i for i in rungs if i <= reached]
        ax.plot(
            worked,
            [ex.ladder[i] for i in worked],
            "o-",
            color="#2c3e50",
            ms=5,
            label="rungs worked",
        )
    if ex.mid_credit is not None:
        ax.axhline(ex.mid_credit, color="#2980b9", ls="--", lw=1, label=f"mid {ex.mid_credit:.2f}")
    if ex.natural_credit is not None:
        ax.axhline(
            ex.natural_credit,
            color="#e67e22",
            ls="--",
            lw=1,
            label=f"natural {ex.natural_credit:.2f}",
        )
    if ex.fill_credit is not None and ex.state in ("FILLED", "PARTIAL", "LIMIT_REACHED"):
        ax.plot(
            [max(reached, 0)],
            [ex.fill_credit],
            "*",
            color="#27ae60",
            ms=16,
            label=f"fill {ex.fill_credit:.2f}",
        )
    if ex.state not in ("FILLED",):
        ax.text(
            0.98,
            0.06,
            f"{ex.state}: no fill" if ex.fill_credit is None else ex.state,
            transform=ax.transAxes,
            ha="right",
            color="#c0392b",
            fontsize=10,
            fontweight="bold",
        )
    ax.set_xlabel("rung (one every TIMEOUT_SECONDS)")
    ax.set_ylabel("credit per spread (USD)")
    ax.set_title(f"{day.name}: ladder of the {data.signal.strategy} spread", fontsize=10)
    ax.grid(True, alpha=0.3)
    if ex.ladder:
        ax.set_xlim(-0.5, len(ex.ladder) - 0.5)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, f"ladder-{day.follower_id}.png", f"Ladder of {day.name}")


def tv_chart(data: DemoData, day: FollowerDay) -> Chart | None:
    if not day.tv:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    spreads = sorted({p.spread_id for p in day.tv})
    for spread in spreads:
        points = [p for p in day.tv if p.spread_id == spread]
        ax.plot([_ny(p.at) for p in points], [p.tv for p in points], color="#2c3e50", lw=1.2)
        for status, colour in STATUS_COLOURS.items():
            chosen = [p for p in points if p.status == status]
            if chosen:
                ax.scatter(
                    [_ny(p.at) for p in chosen],
                    [p.tv for p in chosen],
                    s=9,
                    color=colour,
                    label=status,
                    zorder=3,
                )
    critical = float(data.settings["tv_critical"])
    risk = float(data.settings["tv_risk"])
    ax.axhline(critical, color="#c0392b", lw=1.2, label=f"TV_CRITICAL {critical:.2f}")
    ax.axhline(risk, color="#e67e22", lw=0.8, ls="--", label=f"TV_RISK {risk:.2f}")
    liquidated = _liquidation_time(day)
    if liquidated is not None:
        ax.axvline(_ny(liquidated), color="#c0392b", lw=1, alpha=0.6, ls=":")
    _time_axis(ax, data)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("short leg time value (USD/share)")
    names = ", ".join(spreads)
    ax.set_title(f"{day.name}: time value of {names}", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, f"tv-{day.follower_id}.png", f"Time value, {day.name}")


def alerts_chart(data: DemoData) -> Chart:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.8 * (len(data.followers) + 1)))
    rows = ["(system)"] + [d.follower_id for d in data.followers]
    shown = [a for a in data.alerts if not is_routine_tv(a)]
    # Alerts minutes apart would print their names on top of each other: label
    # each cluster (per row, within 20 simulated minutes) once.
    clusters: list[tuple[int, datetime, list[str]]] = []
    for alert in shown:
        row = rows.index(alert["follower_id"]) if alert.get("follower_id") in rows else 0
        when = _ny(datetime.fromisoformat(str(alert["created_at"]).replace("Z", "+00:00")))
        colour = SEVERITY_COLOURS.get(alert["severity"], "grey")
        ax.scatter([when], [row], color=colour, s=40, zorder=3)
        for c_row, c_when, names in clusters:
            if c_row == row and abs((when - c_when).total_seconds()) < 1200:
                if alert["type"] not in names:
                    names.append(alert["type"])
                break
        else:
            clusters.append((row, when, [alert["type"]]))
    for row, when, names in clusters:
        ax.annotate(
            "\n".join(names),
            (when, row),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=7,
            va="bottom",
        )
    for severity, colour in SEVERITY_COLOURS.items():
        ax.scatter([], [], color=colour, label=severity)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(-0.6, len(rows) + 0.1)
    _time_axis(ax, data)
    ax.set_title("Alerts over the day (unchanged TV statuses left out)", fontsize=10)
    ax.legend(loc="lower right", fontsize=7, ncol=3)
    return _save(fig, "alerts.png", "Alerts timeline")


# ---------------------------------------------------------------- tables


def summary_rows(data: DemoData) -> list[dict[str, str]]:
    """One row per follower: what the terminal table and the page both show."""
    rows = []
    for day in data.followers:
        ex = day.execution
        rows.append(
            {
                "follower": day.follower_id,
                "state": ex.state if ex else "-",
                "qty": str(ex.filled_qty if ex and ex.filled_qty else (ex.qty if ex else "-")),
                "fill credit": _price(ex.fill_credit) if ex else "-",
                "rung": str(ex.rung) if ex and ex.rung is not None and ex.fill_credit else "-",
                "P&L": _money(day.pnl),
                "alerts": str(len(day.people_alerts)),
                "liquidated": "yes" if day.liquidated else "no",
            }
        )
    return rows


def summary_table(data: DemoData) -> str:
    rows = summary_rows(data)
    headers = list(rows[0]) if rows else ["follower"]
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    right = {"qty", "fill credit", "rung", "P&L", "alerts"}

    def fmt(values: dict[str, str]) -> str:
        return "  ".join(
            values[h].rjust(widths[h]) if h in right else values[h].ljust(widths[h])
            for h in headers
        )

    lines = [fmt({h: h for h in headers}), "  ".join("-" * widths[h] for h in headers)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if i in numeric else ""}">{html.escape(str(c))}</td>'
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fills_table(data: DemoData) -> str:
    rows = []
    for day in data.followers:
        for f in day.fills:
            rows.append(
                [
                    f.follower_id,
                    f.exec_time.astimezone(NEW_YORK).strftime("%H:%M:%S"),
                    f.side,
                    f"{f.qty:f}".rstrip("0").rstrip("."),
                    f"{f.symbol} {f.expiry or ''} {f.strike:g} {f.right}" if f.strike else f.symbol,
                    f"{f.price:.2f}",
                    "-" if f.commission is None else f"{f.commission:.2f}",
                    f.order_ref or "",
                    f.exec_id,
                ]
            )
    headers = ["follower", "time (NY)", "side", "qty", "contract", "price", "commission"]
    headers += ["orderRef", "exec id"]
    return _table(headers, rows, {3, 5, 6})


def daily_table(data: DemoData) -> str:
    rows = []
    for day in data.followers:
        d = day.daily
        if d is None:
            rows.append([day.follower_id, "-", "-", "-", "-", "-", "-", "-", "not rolled up"])
            continue
        rows.append(
            [
                day.follower_id,
                _money(d.realized),
                _money(d.unrealized),
                _money(d.total),
                str(d.trades),
                _money(d.commissions),
                _money(d.max_drawdown),
                _money(d.max_profit),
                "yes" if d.finalized else "no",
            ]
        )
    headers = ["follower", "realized", "unrealized", "total", "trades", "commissions"]
    headers += ["max drawdown", "max profit", "finalized"]
    return _table(headers, rows, {1, 2, 3, 4, 5, 6, 7})


def alerts_table(data: DemoData) -> str:
    rows = [
        [
            datetime.fromisoformat(str(a["created_at"]).replace("Z", "+00:00"))
            .astimezone(NEW_YORK)
            .strftime("%H:%M:%S"),
            a["severity"],
            a["type"],
            a.get("follower_id") or "",
            a["message"],
        ]
        for a in data.alerts
        if not is_routine_tv(a)
    ]
    return _table(["time (NY)", "severity", "type", "follower", "message"], rows, set())


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#2c3e50;max-width:1100px}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.86em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left}th{background:#f4f6f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:10px}
.note{color:#7f8c8d;font-size:.9em}
"""


def render_html(data: DemoData, charts: dict[str, Chart]) -> str:
    sig = data.signal
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>SpreadPilot demo {data.trading_date}</title><style>{_CSS}</style></head><body>",
        f"<h1>SpreadPilot paper trading day {data.trading_date.isoformat()}</h1>",
        "<p>Signal from the sheet at 09:27 New York: "
        f"<b>{html.escape(sig.strategy)}</b> QQQ {sig.strike_long:g}/{sig.strike_short:g} "
        f"x{sig.qty_per_leg} per leg (bull put credit spread, expiring today).</p>",
        "<h2>Summary</h2>",
        _table(
            list(summary_rows(data)[0]) if data.followers else [],
            [list(r.values()) for r in summary_rows(data)],
            {2, 3, 4, 5, 6},
        ),
        "<p class='note'>P&amp;L is the finalized daily rollup (pnl_daily.total). Alerts count "
        "what reaches people (unchanged TV statuses excluded).</p>",
        "<h2>P&amp;L over the day</h2>",
    ]
    for day in data.followers:
        chart = charts.get(f"pnl-{day.follower_id}.png")
        if chart:
            parts.append(f"<img alt='{html.escape(chart.title)}' src='{chart.data_uri()}'>")
    parts.append("<h2>Daily rollup (16:30)</h2>" + daily_table(data))
    parts.append("<h2>Executions: the limit ladder</h2><div class='grid'>")
    for day in data.followers:
        chart = charts.get(f"ladder-{day.follower_id}.png")
        if chart:
            parts.append(f"<img alt='{html.escape(chart.title)}' src='{chart.data_uri()}'>")
    parts.append("</div>")
    parts.append("<h2>Time value of each spread (liquidated at or below 0.10)</h2>")
    for day in data.followers:
        chart = charts.get(f"tv-{day.follower_id}.png")
        if chart:
            parts.append(f"<img alt='{html.escape(chart.title)}' src='{chart.data_uri()}'>")
    parts.append("<h2>Alerts</h2>")
    if "alerts.png" in charts:
        parts.append(f"<img alt='alerts timeline' src='{charts['alerts.png'].data_uri()}'>")
    parts.append(alerts_table(data))
    parts.append("<h2>Fills (PostgreSQL <code>fills</code>)</h2>" + fills_table(data))
    parts.append("</body></html>")
    return "\n".join(parts)


def _minute(moment: datetime | None) -> str | None:
    """New York HH:MM: a fill's second depends on when the order arrived, its minute not."""
    return None if moment is None else f"{_ny(moment):%H:%M}"


def report_figures(data: DemoData) -> dict[str, Any]:
    """The figures the page shows, machine-readable (``report.json``), for checks."""
    followers: dict[str, Any] = {}
    for day in data.followers:
        ex = day.execution
        followers[day.follower_id] = {
            "state": ex.state if ex else None,
            "qty": ex.qty if ex else None,
            "filled_qty": ex.filled_qty if ex else 0,
            "fill_credit": ex.fill_credit if ex else None,
            "rung": ex.rung if ex else None,
            "mid_credit": ex.mid_credit if ex else None,
            "natural_credit": ex.natural_credit if ex else None,
            "daily_total": str(day.daily.total) if day.daily else None,
            "daily_realized": str(day.daily.realized) if day.daily else None,
            "intraday_rows": len(day.intraday),
            "fills": len(day.fills),
            "tv_points": len(day.tv),
            "liquidated": day.liquidated,
            "liquidated_at": _minute(_liquidation_time(day)),
            "fill_prices": sorted(
                f"{f.side} {f.qty} {f.right or f.sec_type} {f.strike or ''} @ {f.price}"
                for f in day.fills
            ),
            "alerts": len(day.people_alerts),
            "alert_types": sorted(a["type"] for a in day.people_alerts),
        }
    return {
        "trading_date": data.trading_date.isoformat(),
        "signal": {
            "strategy": data.signal.strategy,
            "strike_long": data.signal.strike_long,
            "strike_short": data.signal.strike_short,
            "qty_per_leg": data.signal.qty_per_leg,
        },
        "followers": followers,
        "alerts_total": len(data.alerts),
    }


def build_charts(data: DemoData) -> dict[str, Chart]:
    charts: list[Chart | None] = []
    for day in data.followers:
        charts.append(pnl_chart(data, day))
        charts.append(ladder_chart(data, day))
        charts.append(tv_chart(data, day))
    charts.append(alerts_chart(data))
    return {c.name: c for c in charts if c is not None}


def write_report(data: DemoData, directory: Path) -> Path:
    """Write index.html, the PNGs and report.json into ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    charts = build_charts(data)
    for chart in charts.values():
        (directory / chart.name).write_bytes(chart.png)
    (directory / "index.html").write_text(render_html(data, charts), encoding="utf-8")
    (directory / "report.json").write_text(
        json.dumps(report_figures(data), indent=1, sort_keys=True), encoding="utf-8"
    )
    return directory
