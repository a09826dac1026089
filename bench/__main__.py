"""Run every benchmark and write docs/benchmarks.md (``make bench``).

    .venv/bin/python -m bench                      # every bench/*.py
    .venv/bin/python -m bench signal_detection     # only these (others' rows are kept)
    .venv/bin/python -m bench --list

Each script runs as its own process (a benchmark that leaks threads, event
loops or sockets cannot skew the next one) with a time limit, and prints one
JSON object (shape: ``bench/_report.py``). The results are merged into
``docs/benchmarks.json`` by name, so re-running one benchmark updates its rows
and keeps the others', and ``docs/benchmarks.md`` is rendered from that file:
one table of figure, value, target and whether it is met, with the machine
(cores, memory, CPU model) and date of each run beside it.

A missed target is reported as measured, never hidden, and does not fail the
run (the figure is the deliverable); a script that crashes, times out or
prints no valid JSON does fail it (exit 1), after the others have run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._report import Figure, figure_from_json

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DOCS = ROOT / "docs"
DEFAULT_TIMEOUT_SECONDS = 900.0


def discover() -> list[Path]:
    """Every benchmark script: ``bench/*.py`` except helpers (``_*.py``)."""
    return sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))


def machine() -> dict[str, Any]:
    """Where the figures were measured: they mean little without it."""
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": platform.processor() or platform.machine(),
        "memory_gib": None,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


def commit() -> str | None:
    """The commit measured (``+dirty`` when the work tree differs)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def parse_output(stdout: str) -> dict[str, Any]:
    """The script's one JSON object (tolerates stray lines before it)."""
    text = stdout.strip()
    candidates = [text] + [text[i + 1 :] for i in range(len(text) - 1, -1, -1) if text[i] == "\n"]
    for candidate in candidates:
        if not candidate.startswith("{"):
            continue
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object on stdout")


def validate(result: dict[str, Any], name: str) -> list[Figure]:
    """Check the shape; the figures, parsed."""
    figures = result.get("figures")
    if not isinstance(figures, list) or not figures:
        raise ValueError("'figures' must be a non-empty list")
    if result.get("name") not in (None, name):
        raise ValueError(f"'name' is {result.get('name')!r}, expected {name!r}")
    return [figure_from_json(f) for f in figures]


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def wait_quiet(
    busy_below: float = 0.15, window: float = 0.5, calm_windows: int = 2, limit: float = 30.0
) -> tuple[float, float | None]:
    """Wait until the machine is idle; (seconds waited, last CPU busy fraction).

    Why: the scripts run one after another on the same two cores as the
    databases, and a benchmark that started while PostgreSQL still vacuumed
    what the previous one wrote would measure that too. The wait and the busy
    fraction are kept with each result, so a reader can see the start was
    quiet (on this machine it always was: the ladder rung's spread between
    runs, 1.02-1.26, is not explained by it). Gives up after ``limit``.
    """
    started = time.monotonic()
    calm = 0
    fraction: float | None = None
    before = _cpu_times()
    while before is not None and time.monotonic() - started < limit:
        time.sleep(window)
        after = _cpu_times()
        if after is None:
            break
        total = after[1] - before[1]
        fraction = (after[0] - before[0]) / total if total > 0 else 0.0
        before = after
        calm = calm + 1 if fraction < busy_below else 0
        if calm >= calm_windows:
            break
    return time.monotonic() - started, fraction


def run_one(script: Path, timeout: float) -> dict[str, Any]:
    """Run one script on a quiet machine; its result, or a record of why there is none."""
    name = script.stem
    waited, busy = wait_quiet()
    started = time.monotonic()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    record: dict[str, Any] = {
        "name": name,
        "measured_at": _now(),
        "machine": machine(),
        "quiet_wait_seconds": round(waited, 1),
        "cpu_busy_at_start": None if busy is None else round(busy, 3),
    }
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=None,  # progress goes straight to the terminal
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        record["error"] = f"timed out after {timeout:.0f} s"
        return record
    record["seconds"] = round(time.monotonic() - started, 1)
    try:
        result = parse_output(proc.stdout)
        validate(result, name)
    except ValueError as exc:
        record["error"] = f"exit {proc.returncode}: {exc}"
        record["stdout_tail"] = proc.stdout[-2000:]
        return record
    if proc.returncode != 0:
        record["error"] = f"exit {proc.returncode} (printed a result anyway)"
    record.update({k: v for k, v in result.items() if k != "name"})
    return record


def load(path: Path) -> dict[str, dict[str, Any]]:
    """Earlier results by name (missing or unreadable file: none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    results = data.get("results", []) if isinstance(data, dict) else []
    return {r["name"]: r for r in results if isinstance(r, dict) and "name" in r}


def render(results: dict[str, dict[str, Any]], run: dict[str, Any]) -> str:
    """docs/benchmarks.md from every stored result."""
    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (`.venv/bin/python -m bench`), which runs every script in",
        "`bench/` as its own process; each prints one JSON object, kept in",
        "`docs/benchmarks.json`, from which this page is generated (do not edit by hand).",
        "A missed target is reported as measured.",
        "",
        "## Latest run",
        "",
        f"- date: {run['date']}",
        f"- commit: {run.get('commit') or 'unknown'}",
        *(f"- {key}: {value}" for key, value in _machine_lines(run["machine"])),
        "",
        "## Results",
        "",
        "| benchmark | figure | value | target | met? |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(results, key=lambda n: str(results[n].get("title", n))):
        result = results[name]
        title = str(result.get("title") or name)
        if "figures" not in result:
            lines.append(f"| {title} | (no result) | {result.get('error', '')} | | FAILED |")
            continue
        for raw in result["figures"]:
            fig = figure_from_json(raw)
            value = f"{_fmt(fig.value)} {fig.unit}".strip()
            if fig.target is None:
                target, met = "", ""
            else:
                target = fig.target.describe(fig.unit)
                met = "yes" if fig.target.met_by(fig.value) else "**NO**"
            lines.append(f"| {title} | {fig.label} | {value} | {target} | {met} |")
    lines += ["", "## Per benchmark", ""]
    for name in sorted(results, key=lambda n: str(results[n].get("title", n))):
        result = results[name]
        lines += [f"### {result.get('title') or name}", ""]
        if result.get("description"):
            lines += [str(result["description"]), ""]
        where = result.get("machine", {})
        lines.append(
            f"Script `bench/{name}.py`; measured {result.get('measured_at', '?')} "
            f"on {where.get('nproc', '?')} cores / {where.get('memory_gib', '?')} GiB "
            f"({where.get('cpu_model', '?')}), {result.get('seconds', '?')} s wall."
        )
        if result.get("error"):
            lines += ["", f"**Error:** {result['error']}"]
        details = result.get("details")
        if details:
            lines += ["", "```json", json.dumps(details, indent=2, default=str), "```"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _machine_lines(info: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("cores (nproc)", info.get("nproc")),
        ("memory", f"{info.get('memory_gib')} GiB"),
        ("CPU", info.get("cpu_model")),
        ("OS", info.get("os")),
        ("Python", info.get("python")),
    ]


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    scripts = {p.stem: p for p in discover()}
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: {sorted(scripts)})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="per script")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--no-write", action="store_true", help="print results, leave docs/ alone")
    parser.add_argument("--docs", type=Path, default=DOCS, help="where benchmarks.md/json go")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(sorted(scripts)))
        return 0
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(scripts)}")
    chosen = args.names or sorted(scripts)

    fresh = {name: run_one(scripts[name], args.timeout) for name in chosen}
    failed = sorted(n for n, r in fresh.items() if r.get("error"))
    for name, record in fresh.items():
        print(json.dumps(record, default=str), flush=True)
        if record.get("error"):
            print(f"[bench] {name} FAILED: {record['error']}", file=sys.stderr)

    if not args.no_write:
        data_path = args.docs / "benchmarks.json"
        results = load(data_path)
        results.update(fresh)
        run = {"date": _now(), "commit": commit(), "machine": machine(), "ran": chosen}
        args.docs.mkdir(parents=True, exist_ok=True)
        data_path.write_text(
            json.dumps({"run": run, "results": list(results.values())}, indent=2, default=str)
            + "\n",
            encoding="utf-8",
        )
        (args.docs / "benchmarks.md").write_text(render(results, run), encoding="utf-8")
        print(f"[bench] wrote {args.docs / 'benchmarks.md'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
