"""A local Google Sheets API v4 server that unmodified gspread talks to.

Only the read side the signal poller uses is served: ``spreadsheets.get``
(metadata, which ``gspread.Client.open_by_key`` fetches) and
``spreadsheets.values.get`` (what ``Worksheet.get_all_values`` fetches), with
Google's JSON shapes: formatted string values, trailing empty cells and rows
trimmed, Google's error envelope for 4xx/5xx. A request needs either an API key
(``?key=`` or ``x-goog-api-key``) or a bearer token, as the real API does.

Tests drive it in-process (:meth:`SheetsStandIn.set_values`,
:attr:`faults`); another process (the demo) can drive it over HTTP with the
``/_admin`` routes.
"""

from __future__ import annotations

import argparse
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from spreadpilot.standins._http import (
    FaultInjector,
    RecordedRequest,
    Reply,
    StandInServer,
    apply_fault_script,
    serve_as_process,
)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(status: int, message: str) -> Reply:
    """Google's error envelope, which gspread's APIError parses."""
    return Reply(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            }
        },
    )


@dataclass
class _Worksheet:
    sheet_id: int
    title: str
    values: list[list[str]] = field(default_factory=list)


@dataclass
class _Spreadsheet:
    spreadsheet_id: str
    title: str
    worksheets: list[_Worksheet] = field(default_factory=list)


_A1 = re.compile(r"^([A-Za-z]*)(\d*)$")


def _column_index(letters: str) -> int:
    index = 0
    for char in letters.upper():
        index = index * 26 + (ord(char) - ord("A") + 1)
    return index - 1


def _trim(rows: list[list[str]]) -> list[list[str]]:
    """Drop trailing empty cells of each row and trailing empty rows (as Google does)."""
    trimmed: list[list[str]] = []
    for row in rows:
        cells = [str(cell) for cell in row]
        while cells and cells[-1] == "":
            cells.pop()
        trimmed.append(cells)
    while trimmed and not trimmed[-1]:
        trimmed.pop()
    return trimmed


class SheetsStandIn(StandInServer):
    """In-memory spreadsheets behind the Sheets API v4 wire protocol."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.faults = FaultInjector()
        self._data_lock = threading.Lock()
        self._spreadsheets: dict[str, _Spreadsheet] = {}
        self.route("GET", "/v4/spreadsheets/{id}", self._get_spreadsheet)
        self.route("GET", "/v4/spreadsheets/{id}/values/{range...}", self._get_values)
        self.route("PUT", "/_admin/spreadsheets/{id}/sheets/{title}", self._admin_put)
        self.route("POST", "/_admin/faults", self._admin_faults)
        self.route("GET", "/_admin/requests", self._admin_requests)

    # -- test-side API -------------------------------------------------------
    def set_values(
        self,
        spreadsheet_id: str,
        rows: list[list[Any]],
        worksheet: str = "Sheet1",
        title: str = "Signals",
    ) -> None:
        """Create or replace one worksheet's cells (values are shown as strings)."""
        with self._data_lock:
            book = self._spreadsheets.setdefault(
                spreadsheet_id, _Spreadsheet(spreadsheet_id=spreadsheet_id, title=title)
            )
            for sheet in book.worksheets:
                if sheet.title == worksheet:
                    sheet.values = [["" if c is None else str(c) for c in r] for r in rows]
                    return
            book.worksheets.append(
                _Worksheet(
                    sheet_id=len(book.worksheets),
                    title=worksheet,
                    values=[["" if c is None else str(c) for c in r] for r in rows],
                )
            )

    def value_reads(self, spreadsheet_id: str | None = None) -> int:
        """How many values.get requests were answered 200 (one per poll)."""
        prefix = "/v4/spreadsheets/" + (spreadsheet_id or "")
        return sum(
            1
            for r in self.requests
            if r.method == "GET" and "/values/" in r.path and r.path.startswith(prefix)
            if r.status == 200
        )

    # -- routes --------------------------------------------------------------
    def _authorised(self, request: RecordedRequest) -> Reply | None:
        if (
            request.query.get("key")
            or request.headers.get("x-goog-api-key")
            or request.headers.get("authorization", "").startswith("Bearer ")
        ):
            return None
        return google_error(
            403,
            "The request is missing a valid API key.",
        )

    def _fault(self) -> Reply | None:
        fault = self.faults.take()
        if fault is None:
            return None
        status, retry_after = fault
        reply = google_error(
            status,
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
            "minute per user' of service 'sheets.googleapis.com'."
            if status == 429
            else "The service is currently unavailable.",
        )
        if retry_after is not None:
            reply.headers["Retry-After"] = str(int(retry_after))
        return reply

    def _book(self, spreadsheet_id: str) -> _Spreadsheet | None:
        with self._data_lock:
            return self._spreadsheets.get(spreadsheet_id)

    def _get_spreadsheet(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        denied = self._authorised(request) or self._fault()
        if denied is not None:
            return denied
        book = self._book(params["id"])
        if book is None:
            return google_error(404, "Requested entity was not found.")
        with self._data_lock:
            sheets = [
                {
                    "properties": {
                        "sheetId": sheet.sheet_id,
                        "title": sheet.title,
                        "index": index,
                        "sheetType": "GRID",
                        "gridProperties": {
                            "rowCount": max(1000, len(sheet.values)),
                            "columnCount": max(26, *(len(r) for r in sheet.values or [[]])),
                        },
                    }
                }
                for index, sheet in enumerate(book.worksheets)
            ]
        return Reply(
            200,
            {
                "spreadsheetId": book.spreadsheet_id,
                "properties": {
                    "title": book.title,
                    "locale": "en_US",
                    "autoRecalc": "ON_CHANGE",
                    "timeZone": "America/New_York",
                },
                "sheets": sheets,
                "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.spreadsheet_id}/edit",
            },
        )

    def _get_values(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        denied = self._authorised(request) or self._fault()
        if denied is not None:
            return denied
        book = self._book(params["id"])
        if book is None:
            return google_error(404, "Requested entity was not found.")
        a1 = params["range"]
        title, _, cells = a1.partition("!")
        with self._data_lock:
            by_title = {sheet.title: sheet for sheet in book.worksheets}
            unquoted = title.strip("'").replace("''", "'")
            if unquoted in by_title:
                sheet = by_title[unquoted]
            elif not cells and book.worksheets and _A1.match(title.split(":")[0]):
                # A bare A1 range ("A1:F20") addresses the first worksheet.
                sheet, cells = book.worksheets[0], title
            else:
                return google_error(400, f"Unable to parse range: {a1}")
            rows = [list(r) for r in sheet.values]
            sheet_title = sheet.title
        picked, bounds = _slice(rows, cells)
        if picked is None:
            return google_error(400, f"Unable to parse range: {a1}")
        body: dict[str, Any] = {
            "range": f"'{sheet_title}'!{bounds}",
            "majorDimension": "ROWS",
        }
        values = _trim(picked)
        if values:
            body["values"] = values
        return Reply(200, body)

    def _admin_put(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        payload = request.json() or {}
        self.set_values(params["id"], payload.get("values", []), worksheet=params["title"])
        return Reply(200, {"ok": True})

    def _admin_faults(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        return apply_fault_script(self.faults, request)

    def _admin_requests(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        return Reply(
            200,
            [
                {"method": r.method, "path": r.path, "status": r.status}
                for r in self.requests
                if not r.path.startswith("/_admin")
            ],
        )


def _slice(rows: list[list[str]], cells: str) -> tuple[list[list[str]] | None, str]:
    """Cut an A1 range ("A1:F20", "A:F", "A3:F") out of the grid."""
    width = max((len(r) for r in rows), default=1)
    height = max(len(rows), 1)
    if not cells:
        return rows, f"A1:{_column_letters(max(width, 26) - 1)}{max(height, 1000)}"
    start, _, end = cells.partition(":")
    first, last = _A1.match(start), _A1.match(end or start)
    if first is None or last is None:
        return None, ""
    col0 = _column_index(first.group(1)) if first.group(1) else 0
    row0 = int(first.group(2)) - 1 if first.group(2) else 0
    col1 = _column_index(last.group(1)) if last.group(1) else width - 1
    row1 = int(last.group(2)) - 1 if last.group(2) else height - 1
    if col1 < col0 or row1 < row0:
        return None, ""
    picked = [row[col0 : col1 + 1] for row in rows[row0 : row1 + 1]]
    return picked, cells


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def main(argv: list[str] | None = None) -> None:
    """Run the stand-in as a process (for the demo): ``python -m spreadpilot.standins.sheets``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = SheetsStandIn(port=args.port)
    serve_as_process(server, "sheets")


if __name__ == "__main__":
    main()
