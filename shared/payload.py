"""Result payload bytes: JSON, or JSON compressed as one zlib stream where that pays.

A result is UTF-8 JSON (:mod:`shared.schema`). Over :data:`COMPRESS_OVER_BYTES` the agent sends
it compressed as a zlib stream (RFC 1950, level :data:`LEVEL`) when that is smaller, typically a
third of the JSON. The first byte tells the two apart: a zlib stream with a 32 KiB window starts
with ``0x78`` (``x``), a byte no JSON text starts with (JSON starts with whitespace, ``{``, ``[``,
``"``, a digit, ``-``, ``t``, ``f`` or ``n``). So no MQTT v5 content type is needed, and an MQTT
3.1.1 broker or NATS carries it unchanged; a non-Python consumer inflates it with any zlib
(``zlib.decompress``, ``pako.inflate``, ``zlib-flate -uncompress``).

Readers accept both forms (:func:`unpack`). The JSON inside a compressed payload is held to the
same :data:`shared.schema.MAX_MESSAGE_BYTES` as an uncompressed one: inflating stops one byte past
it, so a small payload that would inflate to gigabytes costs nothing.
"""

from __future__ import annotations

import zlib

from shared.schema import MAX_MESSAGE_BYTES

__all__ = [
    "COMPRESS_OVER_BYTES",
    "LEVEL",
    "PayloadError",
    "PayloadTooLarge",
    "is_compressed",
    "pack",
    "unpack",
]

COMPRESS_OVER_BYTES = 1024
"""JSON up to this size goes as it is: below it zlib's 6 bytes of framing and the CPU buy little."""
LEVEL = 6
"""zlib's default level: within a few bytes of level 9 on results, at a fraction of the time."""
_ZLIB_FIRST_BYTE = 0x78


class PayloadError(ValueError):
    """A payload that starts like a zlib stream but is not a whole, single one."""


class PayloadTooLarge(PayloadError):
    """A zlib payload whose JSON would be over the wire's limit."""


def is_compressed(payload: bytes | bytearray | memoryview) -> bool:
    """Whether ``payload`` is a zlib stream (its first byte is ``0x78``; see the module docstring)."""
    return len(payload) >= 2 and payload[0] == _ZLIB_FIRST_BYTE


def pack(json_bytes: bytes) -> bytes:
    """``json_bytes`` as they go on the wire: compressed when over the threshold and smaller."""
    if len(json_bytes) <= COMPRESS_OVER_BYTES or is_compressed(json_bytes):
        return json_bytes
    packed = zlib.compress(json_bytes, LEVEL)
    return packed if len(packed) < len(json_bytes) else json_bytes


def unpack(payload: bytes, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """The JSON bytes of a payload in either form; raises :class:`PayloadError` for a zlib
    stream that is corrupt, truncated, followed by other bytes, or inflates past ``limit``."""
    if not is_compressed(payload):
        return bytes(payload)
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload, limit + 1)
    except zlib.error as err:
        raise PayloadError(f"payload starts like zlib (0x78) but does not inflate: {err}") from err
    if len(text) > limit:
        raise PayloadTooLarge(f"payload inflates to over the {limit}-byte limit of the wire")
    if not inflater.eof:
        raise PayloadError("payload is a truncated zlib stream")
    if inflater.unused_data:
        raise PayloadError("payload has bytes after its zlib stream")
    return text
