"""Wire framing of the TWS API: length-prefixed frames of NUL-terminated fields.

Every message after the opening ``API\\0`` is a 4-byte big-endian length followed
by that many bytes of UTF-8 text, each field terminated by a NUL byte. This
module owns the byte level only (frames, the handshake, field spelling), so the
encoders and the request parser can work with plain lists of strings and be
pinned by golden tests without sockets.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

HEADER = struct.Struct(">I")
API_PREFIX = b"API\0"
MAX_FRAME_BYTES = 16 * 1024 * 1024

#: The highest server version we announce. 176 is the newest layout both released
#: client libraries accept (177 drops ``faProfile``, which ib_insync 0.9.86 still
#: reads unconditionally).
SERVER_MAX_VERSION = 176
#: The oldest layout the encoders implement.
SERVER_MIN_VERSION = 157

#: How TWS spells "no value" for doubles, the largest finite double.
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1


class FramingError(Exception):
    """The peer sent bytes that are not a TWS API frame."""


def fmt_float(value: float | None) -> str:
    """Spell a double the way the client decoders accept it (``""`` for unset)."""
    if value is None or math.isnan(value) or value >= UNSET_DOUBLE:
        return ""
    if math.isinf(value):
        return "Infinite"
    rounded = round(value, 8)
    if rounded == 0:
        return "0.0"
    return repr(rounded)


def fmt_price(value: float | None) -> str:
    """A price on the penny grid, always with a decimal point (``0.8``, ``-1.25``)."""
    if value is None or math.isnan(value):
        return ""
    cents = round(value * 100)
    if cents == 0:
        return "0.0"
    return repr(cents / 100)


def fmt_int(value: int | None) -> str:
    """Integers must be plain integer strings: the decoders call ``int()`` on them."""
    if value is None or value == UNSET_INTEGER:
        return ""
    return str(int(value))


def fmt_bool(value: bool) -> str:
    return "1" if value else "0"


def fmt_qty(value: float) -> str:
    """Quantities are doubles on the wire; whole numbers are sent without decimals."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def encode_frame(fields: Iterable[str]) -> bytes:
    """One message: length prefix plus NUL-terminated fields."""
    payload = "".join(f"{field}\0" for field in fields).encode()
    return HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> list[str]:
    """Split a frame's payload into its fields (the trailing NUL ends the last one)."""
    text = payload.decode(errors="backslashreplace")
    fields = text.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


async def read_frame(reader: asyncio.StreamReader) -> list[str]:
    """Read exactly one frame; raises ``asyncio.IncompleteReadError`` at EOF."""
    header = await reader.readexactly(HEADER.size)
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FramingError(f"frame of {length} bytes is too large")
    payload = await reader.readexactly(length)
    return decode_payload(payload)


@dataclass(frozen=True)
class VersionRange:
    """What the client announced in its handshake (``v157..178 +PACEAPI``)."""

    min_version: int
    max_version: int
    options: str = ""


_RANGE = re.compile(r"^v(\d+)(?:\.\.(\d+))?(?:\s+(.*))?$")


def parse_version_range(text: str) -> VersionRange:
    match = _RANGE.match(text.strip())
    if not match:
        raise FramingError(f"bad version range {text!r}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    return VersionRange(low, high, (match.group(3) or "").strip())


async def read_handshake(reader: asyncio.StreamReader) -> VersionRange:
    """Read the raw ``API\\0`` prefix and the length-prefixed version range.

    The prefix carries no length, and the following length starts with NUL
    bytes, so the bytes are read by count and never split on NUL.
    """
    prefix = await reader.readexactly(len(API_PREFIX))
    if prefix != API_PREFIX:
        raise FramingError(f"expected API prefix, got {prefix!r}")
    fields = await read_frame(reader)
    if not fields:
        raise FramingError("empty version range")
    return parse_version_range(fields[0])


def negotiate(announced: VersionRange, server_max: int = SERVER_MAX_VERSION) -> int | None:
    """Pick the server version like TWS does, or ``None`` to refuse the client.

    TWS answers ``min(client_max, own_max)``; the client is refused when that is
    below the client's own minimum or below the oldest layout we can encode.
    """
    version = min(announced.max_version, server_max)
    if version < max(announced.min_version, SERVER_MIN_VERSION):
        return None
    return version


def handshake_reply(version: int, connection_time: str) -> bytes:
    """The server's only unsolicited-format message: exactly two fields."""
    return encode_frame([str(version), connection_time])
