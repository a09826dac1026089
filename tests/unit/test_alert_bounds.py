"""An alert can always be delivered: text copied from outside is cut, visibly."""

from __future__ import annotations

from datetime import UTC, datetime

from spreadpilot.domain.alerts import (
    MAX_MESSAGE_CHARS,
    MAX_PARAM_ITEMS,
    MAX_PARAM_TEXT_CHARS,
    Alert,
    AlertType,
)

AT = datetime(2041, 1, 7, 14, 30, tzinfo=UTC)


def test_a_pasted_blob_in_params_is_cut_and_the_alert_stays_small() -> None:
    cells = ["9" * 30_000] * 3 + ["Long"]
    alert = Alert.create(AlertType.SIGNAL_INVALID, None, "row 2 invalid", {"cells": cells}, AT)
    kept = alert.params["cells"]
    assert kept[3] == "Long"
    assert len(kept[0]) == MAX_PARAM_TEXT_CHARS
    assert kept[0].startswith("9" * 400)
    assert kept[0].endswith("(30000 characters in all)")
    assert len(alert.to_json()) < 8 * 1024
    # Round trip: what the fan-out decodes is what was sent.
    assert Alert.from_json(alert.to_json()) == alert


def test_long_lists_and_messages_are_shortened() -> None:
    alert = Alert.create(
        AlertType.COMPONENT_DOWN, None, "x" * 10_000, {"rows": list(range(1000))}, AT
    )
    assert len(alert.message) == MAX_MESSAGE_CHARS
    assert alert.params["rows"][:MAX_PARAM_ITEMS] == list(range(MAX_PARAM_ITEMS))
    assert alert.params["rows"][-1] == f"… {1000 - MAX_PARAM_ITEMS} more items"


def test_deep_nesting_is_flattened() -> None:
    deep: dict[str, object] = {"a": {"b": {"c": {"d": {"e": "x" * 100_000}}}}}
    alert = Alert.create(AlertType.COMPONENT_DOWN, None, "m", deep, AT)
    assert len(alert.to_json()) < 8 * 1024


def test_ordinary_params_are_untouched() -> None:
    params = {"attempts": 10, "initial_limit": -0.85, "final_limit": -0.76, "filled_qty": 0}
    alert = Alert.create(AlertType.LIMIT_REACHED, None, "Ladder ended unfilled", params, AT)
    assert alert.params == params
