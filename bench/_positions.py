"""A real sidecar ``GET /positions`` payload, multiplied to many followers and served.

Why: a TV or P&L cycle over 200 or 1,000 followers would need as many IB
sessions behind one sidecar (in production: as many gateways, ~1 GB each, on
several sidecar shards). What the functions' cycle consumes is the sidecar's
``/positions`` answer, so that answer is taken from the real sidecar on ibsim
for one follower holding one filled spread, copied for every follower (same
spread, same marks, the follower id changed), and served by a real HTTP server
on loopback. The fills behind it are copied the same way (see ``mtm_cycle``).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _stack import Gateway, Sidecar, bench_clock, log, stores

ACCOUNT = "DU8700001"


def captured_positions() -> tuple[dict[str, Any], list[Any]]:
    """(one follower's ``/positions`` entry with a filled spread, that follower's fills)."""
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.storage.fills import FillsRepository

    gateway = Gateway([ACCOUNT], bench_clock(1.0))
    db = stores()
    try:
        followers = db.add_followers(gateway, [ACCOUNT], max_open_spreads=10)
        sidecar = Sidecar(db, gateway.sim.clock, followers, TIMEOUT_SECONDS="5")
        try:
            gateway.lt.call(lambda: gateway.sim.control.resume_fills())
            gateway.lt.call(lambda: gateway.sim.control.shift_spot(-1.0))
            body = {
                "strategy": "bull_put",
                "qty_per_leg": 2,
                "strike_long": 475,
                "strike_short": 480,
                "signal_id": f"cap-{uuid.uuid4().hex[:6]}",
            }
            ex = sidecar.http.post("/trade/signal", json=body).json()["executions"][0]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if (
                    sidecar.http.get(f"/executions/{ex['execution_id']}").json()["state"]
                    == "FILLED"
                ):
                    break
                time.sleep(0.1)
            fills: list[Any] = []
            while time.monotonic() < deadline and len(fills) < 2:
                fills = FillsRepository(Postgres(db.pg_dsn)).list_for_follower(
                    followers[0], gateway.sim.clock.now().date()
                )
                time.sleep(0.1)
            entry = sidecar.http.get("/positions").json()["followers"][0]
            if not entry.get("spreads") or len(fills) < 2:
                raise RuntimeError(f"no filled spread to copy: {entry} / {len(fills)} fills")
            return entry, fills
        finally:
            sidecar.stop()
    finally:
        db.drop()
        gateway.stop()


def payload_for(entry: dict[str, Any], follower_ids: list[str]) -> bytes:
    """The ``GET /positions`` body for every follower, each with ``entry``'s spread."""
    followers = []
    for fid in follower_ids:
        one = copy.deepcopy(entry)
        one["follower_id"] = fid
        followers.append(one)
    return json.dumps({"followers": followers}).encode()


class PositionsServer:
    """Serves a fixed ``/positions`` body (and each follower's part) over real HTTP."""

    def __init__(self, body: bytes) -> None:
        parsed = json.loads(body)
        parts = {f["follower_id"]: json.dumps(f).encode() for f in parsed["followers"]}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/positions":
                    data = body
                elif self.path.startswith("/positions/") and self.path[11:] in parts:
                    data = parts[self.path[11:]]
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        log(f"serving /positions for {len(parts)} followers ({len(body) / 1e6:.1f} MB)")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
