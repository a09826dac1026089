"""MongoDB through pymongo (MongoDB Atlas in production, FerretDB locally).

Why the helpers: every repository wants the same database view (timezone-aware
UTC datetimes, short server-selection timeout so a dead database fails fast
instead of hanging a trading path for 30 s), and the same conversion of domain
values to BSON (dates as ISO text, enums as their value, Decimals as text;
FerretDB has no Decimal128).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from bson.codec_options import CodecOptions
from pydantic import BaseModel
from pymongo import MongoClient
from pymongo.database import Database

Document = dict[str, Any]

CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)


def connect(
    uri: str, *, timeout_ms: int = 3000, app_name: str = "spreadpilot"
) -> MongoClient[Document]:
    """A client with short timeouts (the caller closes it)."""
    return MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 3, 10_000),
        appname=app_name,
        tz_aware=True,
        tzinfo=UTC,
    )


def database(client: MongoClient[Document], name: str) -> Database[Document]:
    """The named database with UTC-aware datetime decoding."""
    return client.get_database(name, codec_options=CODEC_OPTIONS)


def with_codec(db: Database[Any]) -> Database[Document]:
    """Re-view a database handed in from elsewhere (tests, other code) with our codec."""
    return db.with_options(codec_options=CODEC_OPTIONS)


def to_bson(value: Any) -> Any:
    """Domain values to BSON-encodable ones.

    datetimes stay datetimes (BSON dates); plain dates become ISO text because
    BSON has no date type; Decimals become text (lossless, and FerretDB has no
    Decimal128); enums become their value; models their JSON-shaped dict.
    """
    if isinstance(value, BaseModel):
        return to_bson(value.model_dump(by_alias=True))
    if isinstance(value, Enum):
        return to_bson(value.value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime cannot be stored; use UTC-aware datetimes")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_bson(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_bson(v) for v in value]
    return value
