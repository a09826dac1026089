"""Client -> server request parsing.

Clients spell unset numbers as ``""``, ints and floats either way (``500`` or
``500.0``) and bools as ``0``/``1``, so every read here is forgiving. placeOrder
has no version field and several conditional sections; it is walked field by
field, exactly in the order ib_async and ib_insync write it, up to the whatIf
flag, and the rest is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .contracts import ContractQuery
from .orders import ComboLegSpec, OrderTicket


class RequestError(ValueError):
    """A request that cannot be parsed."""


class FieldReader:
    """Sequential, forgiving reader over one message's fields."""

    def __init__(self, fields: list[str], start: int = 0) -> None:
        self.fields = fields
        self.pos = start

    def remaining(self) -> int:
        return len(self.fields) - self.pos

    def str(self) -> str:
        if self.pos >= len(self.fields):
            self.pos += 1
            return ""
        value = self.fields[self.pos]
        self.pos += 1
        return value

    def skip(self, n: int = 1) -> None:
        self.pos += n

    def int(self, default: int = 0) -> int:
        text = self.str().strip()
        if not text:
            return default
        try:
            return int(text)
        except ValueError:
            try:
                return int(float(text))
            except ValueError as exc:
                raise RequestError(f"bad integer {text!r} at field {self.pos - 1}") from exc

    def float(self) -> float | None:
        text = self.str().strip()
        if not text:
            return None
        if text == "Infinite":
            return float("inf")
        try:
            return float(text)
        except ValueError as exc:
            raise RequestError(f"bad number {text!r} at field {self.pos - 1}") from exc

    def bool(self) -> bool:
        text = self.str().strip()
        if not text:
            return False
        try:
            return float(text) != 0
        except ValueError:
            return text.lower() == "true"

    def contract(self) -> ContractQuery:
        """The 12 contract fields every request writes (conId .. tradingClass)."""
        return ContractQuery(
            con_id=self.int(),
            symbol=self.str(),
            sec_type=self.str(),
            last_trade_date=self.str(),
            strike=self.float(),
            right=self.str(),
            multiplier=self.str(),
            exchange=self.str(),
            primary_exchange=self.str(),
            currency=self.str(),
            local_symbol=self.str(),
            trading_class=self.str(),
        )


def message_id(fields: list[str]) -> int:
    try:
        return int(fields[0])
    except (IndexError, ValueError) as exc:
        raise RequestError(f"bad message id in {fields[:1]!r}") from exc


# -- session ----------------------------------------------------------------------


@dataclass
class StartApi:
    client_id: int
    optional_capabilities: str


def parse_start_api(fields: list[str]) -> StartApi:
    r = FieldReader(fields, 2)
    return StartApi(r.int(), r.str())


# -- contracts and market data ------------------------------------------------------


@dataclass
class ContractDetailsRequest:
    req_id: int
    contract: ContractQuery
    include_expired: bool = False


def parse_contract_details(fields: list[str]) -> ContractDetailsRequest:
    r = FieldReader(fields, 2)
    req_id = r.int()
    contract = r.contract()
    return ContractDetailsRequest(req_id, contract, r.bool())


@dataclass
class SecDefOptParamsRequest:
    req_id: int
    underlying_symbol: str
    fut_fop_exchange: str
    underlying_sec_type: str
    underlying_con_id: int


def parse_sec_def_opt_params(fields: list[str]) -> SecDefOptParamsRequest:
    r = FieldReader(fields, 1)
    return SecDefOptParamsRequest(r.int(), r.str(), r.str(), r.str(), r.int())


@dataclass
class MarketDataRequest:
    req_id: int
    contract: ContractQuery
    legs: list[ComboLegSpec] = field(default_factory=list)
    generic_ticks: str = ""
    snapshot: bool = False
    regulatory_snapshot: bool = False


def parse_market_data(fields: list[str]) -> MarketDataRequest:
    r = FieldReader(fields, 2)
    req_id = r.int()
    contract = r.contract()
    legs: list[ComboLegSpec] = []
    if contract.sec_type.upper() == "BAG":
        for _ in range(r.int()):
            legs.append(
                ComboLegSpec(con_id=r.int(), ratio=r.int(1), action=r.str(), exchange=r.str())
            )
    if r.bool():
        r.skip(3)  # delta-neutral contract
    generic = r.str()
    snapshot = r.bool()
    regulatory = r.bool()
    return MarketDataRequest(req_id, contract, legs, generic, snapshot, regulatory)


# -- orders -----------------------------------------------------------------------


def parse_place_order(fields: list[str], version: int) -> OrderTicket:
    """placeOrder (3), walked sequentially to the whatIf flag (see tws-protocol.md §5)."""
    r = FieldReader(fields, 1)
    order_id = r.int()
    contract = r.contract()
    r.skip(2)  # secIdType, secId
    ticket = OrderTicket(order_id=order_id, contract=contract)
    ticket.action = r.str().upper()
    ticket.total_quantity = r.float() or 0.0
    ticket.order_type = r.str().upper()
    ticket.lmt_price = r.float()
    ticket.aux_price = r.float()
    ticket.tif = r.str() or "DAY"
    ticket.oca_group = r.str()
    ticket.account = r.str()
    ticket.open_close = r.str()
    ticket.origin = r.int()
    ticket.order_ref = r.str()
    ticket.transmit = r.str().strip() != "0"
    ticket.parent_id = r.int()
    r.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    ticket.outside_rth = r.bool()
    r.skip(1)  # hidden
    if contract.sec_type.upper() == "BAG":
        for _ in range(r.int()):
            ticket.legs.append(
                ComboLegSpec(
                    con_id=r.int(),
                    ratio=r.int(1),
                    action=r.str().upper(),
                    exchange=r.str(),
                    open_close=r.int(),
                    short_sale_slot=r.int(),
                    designated_location=r.str(),
                    exempt_code=r.int(-1),
                )
            )
        for _ in range(r.int()):
            ticket.order_combo_prices.append(r.float())
        for _ in range(r.int()):
            ticket.smart_combo_params.append((r.str(), r.str()))
    # "", discretionaryAmt, goodAfterTime, goodTillDate, faGroup, faMethod, faPercentage
    r.skip(7)
    if version < 177:
        r.skip(1)  # faProfile
    # modelCode .. overridePercentageConstraints (20 fields), volatility, volatilityType
    r.skip(22)
    delta_neutral_type = r.str()
    r.skip(1)  # deltaNeutralAuxPrice
    if delta_neutral_type:
        r.skip(8)
    # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent,
    # scaleInitLevelSize, scaleSubsLevelSize
    r.skip(6)
    increment = r.float()
    if increment is not None and 0 < increment < 1.7976931348623157e308:
        r.skip(7)
    r.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if r.str():  # hedgeType
        r.skip(1)  # hedgeParam
    r.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if r.bool():  # delta-neutral contract
        r.skip(3)
    if r.str():  # algoStrategy
        r.skip(2 * r.int())
    r.skip(1)  # algoId
    ticket.what_if = r.bool()
    return ticket


@dataclass
class CancelOrderRequest:
    order_id: int


def parse_cancel_order(fields: list[str]) -> CancelOrderRequest:
    return CancelOrderRequest(FieldReader(fields, 2).int())


@dataclass
class ExecutionFilter:
    req_id: int
    client_id: int = 0
    account: str = ""
    time: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""


def parse_executions(fields: list[str]) -> ExecutionFilter:
    r = FieldReader(fields, 2)
    return ExecutionFilter(r.int(), r.int(), r.str(), r.str(), r.str(), r.str(), r.str(), r.str())


# -- account ----------------------------------------------------------------------


@dataclass
class AccountUpdatesRequest:
    subscribe: bool
    account: str


def parse_account_updates(fields: list[str]) -> AccountUpdatesRequest:
    r = FieldReader(fields, 2)
    return AccountUpdatesRequest(r.bool(), r.str())


@dataclass
class AccountSummaryRequest:
    req_id: int
    group: str
    tags: list[str]


def parse_account_summary(fields: list[str]) -> AccountSummaryRequest:
    r = FieldReader(fields, 2)
    req_id = r.int()
    group = r.str()
    tags = [t.strip() for t in r.str().split(",") if t.strip()]
    return AccountSummaryRequest(req_id, group, tags)


@dataclass
class AccountUpdatesMultiRequest:
    req_id: int
    account: str
    model_code: str
    ledger_and_nlv: bool


def parse_account_updates_multi(fields: list[str]) -> AccountUpdatesMultiRequest:
    r = FieldReader(fields, 2)
    return AccountUpdatesMultiRequest(r.int(), r.str(), r.str(), r.bool())


def parse_req_id(fields: list[str], start: int = 2) -> int:
    """The request id of the many messages shaped ``id|version|reqId|...``."""
    return FieldReader(fields, start).int()
