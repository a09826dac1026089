"""Where the signal sheet's cells come from: Google Sheets via gspread, or a CSV file.

Both sources return the raw cell grid (rows of strings) and leave every
decision to the domain parser, so a local CSV run and production read the
sheet with exactly the same rules.

gspread is used unmodified. To point it at something other than
``https://sheets.googleapis.com`` (the local stand-in in tests and the demo),
it is handed a ``requests`` session that rewrites the API host, which is the
extension point gspread documents (``Client(auth=None, session=...)``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Protocol

import gspread
import requests
from google.auth.credentials import Credentials
from google.auth.transport.requests import AuthorizedSession

GOOGLE_SHEETS_BASE = "https://sheets.googleapis.com"
READONLY_SCOPES = ("https://www.googleapis.com/auth/spreadsheets.readonly",)
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class SheetReadError(Exception):
    """A read that failed; ``transient`` says whether retrying can help.

    429 (the per-user quota of about 60 reads a minute) and 5xx are transient:
    the poller backs off and keeps its window. 403/404 are configuration
    mistakes that no retry fixes, so they are reported instead of hammered.
    """

    def __init__(self, message: str, *, status: int | None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class SheetSource(Protocol):
    """Anything that yields the sheet's cell grid, one read per call."""

    def read_rows(self) -> list[list[str]]:
        """The whole grid, rows of cell strings. Raises SheetReadError."""
        ...

    def describe(self) -> str:
        """A short, secret-free description for logs."""
        ...


class _RebasedSession(AuthorizedSession):
    """An authorised session that sends Sheets API calls to another base URL."""

    def __init__(self, credentials: Credentials, base_url: str) -> None:
        super().__init__(credentials)  # type: ignore[no-untyped-call]
        self._base_url = base_url.rstrip("/")

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if url.startswith(GOOGLE_SHEETS_BASE):
            url = self._base_url + url[len(GOOGLE_SHEETS_BASE) :]
        response: requests.Response = super().request(  # type: ignore[no-untyped-call]
            method, url, *args, **kwargs
        )
        return response


def google_credentials(
    *, api_key: str | None = None, service_account_file: str | None = None
) -> Credentials:
    """API key (public sheet), a service-account key file, or ADC, in that order."""
    if api_key:
        from google.auth.api_key import Credentials as ApiKeyCredentials

        return ApiKeyCredentials(api_key)  # type: ignore[no-untyped-call]
    if service_account_file:
        from google.oauth2.service_account import Credentials as ServiceAccountCredentials

        loaded: Credentials = ServiceAccountCredentials.from_service_account_file(  # type: ignore[no-untyped-call]
            service_account_file, scopes=list(READONLY_SCOPES)
        )
        return loaded
    import google.auth

    credentials, _project = google.auth.default(scopes=list(READONLY_SCOPES))
    return credentials


def gspread_client(
    credentials: Credentials, *, base_url: str | None = None, timeout: float = 10.0
) -> gspread.Client:
    """A gspread client; ``base_url`` redirects it (tests and demo only)."""
    session: AuthorizedSession = (
        _RebasedSession(credentials, base_url)
        if base_url and base_url.rstrip("/") != GOOGLE_SHEETS_BASE
        else AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    )
    client = gspread.Client(auth=None, session=session)  # type: ignore[arg-type]
    client.set_timeout(timeout)
    return client


class GoogleSheetSource:
    """One worksheet of a Google Sheet, read with gspread.

    The spreadsheet and worksheet are resolved once (metadata reads) and
    cached; each :meth:`read_rows` is then exactly one ``values.get`` call, so a
    poll every second stays inside the Sheets quota.
    """

    def __init__(
        self, client: gspread.Client, spreadsheet_key: str, worksheet: str | None = None
    ) -> None:
        self._client = client
        self._key = spreadsheet_key
        self._worksheet_name = worksheet
        self._worksheet: gspread.Worksheet | None = None

    def describe(self) -> str:
        sheet = self._worksheet_name or "first worksheet"
        return f"google sheet {self._key} ({sheet})"

    def read_rows(self) -> list[list[str]]:
        try:
            if self._worksheet is None:
                spreadsheet = self._client.open_by_key(self._key)
                self._worksheet = (
                    spreadsheet.worksheet(self._worksheet_name)
                    if self._worksheet_name
                    else spreadsheet.get_worksheet(0)
                )
            values = self._worksheet.get_all_values()
        except gspread.exceptions.APIError as exc:
            status = exc.response.status_code
            raise SheetReadError(
                f"sheets API {status}: {exc.error.get('message', '')}"[:300],
                status=status,
                transient=status in _TRANSIENT_STATUSES,
            ) from exc
        except gspread.exceptions.SpreadsheetNotFound as exc:
            raise SheetReadError("spreadsheet not found", status=404, transient=False) from exc
        except PermissionError as exc:
            raise SheetReadError(
                "no permission to read the sheet", status=403, transient=False
            ) from exc
        except gspread.exceptions.WorksheetNotFound as exc:
            raise SheetReadError(
                f"worksheet {self._worksheet_name!r} not found", status=None, transient=False
            ) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SheetReadError(
                f"sheets API unreachable: {type(exc).__name__}", status=None, transient=True
            ) from exc
        return [[str(cell) for cell in row] for row in values]


class CsvSheetSource:
    """A CSV export of the sheet (same columns) for local runs and the demo.

    Read afresh on every call, so editing the file while the poller runs is
    the local equivalent of someone typing into the sheet.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def describe(self) -> str:
        return f"csv file {self._path}"

    def read_rows(self) -> list[list[str]]:
        try:
            with self._path.open(newline="", encoding="utf-8-sig") as handle:
                return [list(row) for row in csv.reader(handle)]
        except FileNotFoundError as exc:
            # The file may be mid-replacement (editors write-then-rename): retry.
            raise SheetReadError(f"{self._path} not found", status=None, transient=True) from exc
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SheetReadError(
                f"cannot read {self._path}: {type(exc).__name__}", status=None, transient=True
            ) from exc


def sheet_source(
    *,
    csv_path: str | None = None,
    spreadsheet_key: str | None = None,
    worksheet: str | None = None,
    api_key: str | None = None,
    service_account_file: str | None = None,
    base_url: str | None = None,
) -> SheetSource:
    """The configured source: a CSV file when given, else the Google Sheet."""
    if csv_path:
        return CsvSheetSource(csv_path)
    if not spreadsheet_key:
        raise ValueError("no signal sheet configured: set GOOGLE_SHEET_URL or SHEET_CSV_PATH")
    credentials = google_credentials(api_key=api_key, service_account_file=service_account_file)
    return GoogleSheetSource(
        gspread_client(credentials, base_url=base_url), spreadsheet_key, worksheet
    )
