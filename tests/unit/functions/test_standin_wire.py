"""The stand-ins speak the real wire protocols, and our adapters classify their
failures correctly (no services needed: the stand-ins run in-process)."""

from __future__ import annotations

from collections.abc import Iterator

import gspread
import pytest
from spreadpilot.adapters.sendgrid import SendGridClient
from spreadpilot.adapters.sheets import SheetReadError, gspread_client, sheet_source
from spreadpilot.adapters.telegram import DeliveryError, TelegramClient
from spreadpilot.standins import SendGridStandIn, SheetsStandIn, TelegramStandIn


@pytest.fixture
def sheets() -> Iterator[SheetsStandIn]:
    server = SheetsStandIn().start()
    server.set_values("book", [["a", "b", ""], ["1", "", ""], ["", "", ""]], worksheet="Data")
    yield server
    server.stop()


def test_gspread_reads_values_and_ranges_unmodified(sheets: SheetsStandIn) -> None:
    from google.auth.api_key import Credentials

    client = gspread_client(Credentials("key"), base_url=sheets.base_url)
    sheet = client.open_by_key("book")
    assert sheet.title == "Signals"
    worksheet = sheet.worksheet("Data")
    assert worksheet.get_all_values() == [["a", "b"], ["1", ""]]
    assert worksheet.get("A1:A2") == [["a"], ["1"]]
    with pytest.raises(gspread.exceptions.SpreadsheetNotFound):
        client.open_by_key("missing")


def test_sheet_errors_are_classified(sheets: SheetsStandIn) -> None:
    source = sheet_source(spreadsheet_key="book", api_key="k", base_url=sheets.base_url)
    sheets.faults.fail_next(1, status=429)
    with pytest.raises(SheetReadError) as throttled:
        source.read_rows()
    assert throttled.value.transient and throttled.value.status == 429
    assert source.read_rows()[0] == ["a", "b"]
    missing = sheet_source(spreadsheet_key="nope", api_key="k", base_url=sheets.base_url)
    with pytest.raises(SheetReadError) as not_found:
        missing.read_rows()
    assert not not_found.value.transient


def test_telegram_client_against_stand_in() -> None:
    with TelegramStandIn(token="1:abc") as server:
        assert isinstance(server, TelegramStandIn)
        client = TelegramClient("1:abc", base_url=server.base_url)
        assert client.send_message("42", "hello") == 1
        server.faults.fail_next(1, status=429, retry_after=3)
        with pytest.raises(DeliveryError) as limited:
            client.send_message("42", "again")
        assert not limited.value.permanent and limited.value.retry_after == 3
        with pytest.raises(DeliveryError) as bad_token:
            TelegramClient("1:wrong", base_url=server.base_url).send_message("42", "x")
        assert bad_token.value.permanent and "1:wrong" not in str(bad_token.value)
        assert [(m.chat_id, m.text) for m in server.messages] == [("42", "hello")]


def test_sendgrid_client_against_stand_in() -> None:
    with SendGridStandIn(api_key="SG.k") as server:
        assert isinstance(server, SendGridStandIn)
        client = SendGridClient("SG.k", "alerts@example.com", base_url=server.base_url)
        assert client.send("ops@example.com", "subject", "body") == "standin-1"
        server.faults.fail_next(1, status=503)
        with pytest.raises(DeliveryError) as unavailable:
            client.send("ops@example.com", "subject", "body")
        assert not unavailable.value.permanent
        wrong = SendGridClient("SG.other", "alerts@example.com", base_url=server.base_url)
        with pytest.raises(DeliveryError) as unauthorised:
            wrong.send("ops@example.com", "s", "b")
        assert unauthorised.value.permanent and "SG.other" not in str(unauthorised.value)
        assert server.mails[0].to == ("ops@example.com",)
