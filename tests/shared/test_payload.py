"""Result payloads on the wire: JSON, or zlib-compressed JSON told apart by the first byte."""

from __future__ import annotations

import json
import zlib

import pytest

from shared.payload import (
    COMPRESS_OVER_BYTES,
    PayloadError,
    PayloadTooLarge,
    is_compressed,
    pack,
    unpack,
)
from shared.schema import MAX_MESSAGE_BYTES, BenchmarkResult
from tests.factories import make_result


def test_a_small_payload_goes_as_plain_json() -> None:
    small = b'{"schema_version":2}'
    assert pack(small) == small
    assert unpack(small) == small


def test_a_result_goes_compressed_and_inflates_to_the_same_json() -> None:
    result = make_result()
    text = result.model_dump_json().encode()
    assert len(text) > COMPRESS_OVER_BYTES
    packed = pack(text)
    assert is_compressed(packed) and packed[0] == 0x78
    assert len(packed) < len(text) / 2
    assert unpack(packed) == text
    assert BenchmarkResult.model_validate_json(unpack(packed)) == result


def test_no_json_text_starts_with_the_zlib_byte() -> None:
    values: tuple[object, ...] = ({}, [], "x", 1, -1, True, False, None, 0.5)
    for value in values:
        for text in (json.dumps(value), " " + json.dumps(value), "\n" + json.dumps(value)):
            assert not is_compressed(text.encode())


def test_packing_twice_does_not_compress_twice() -> None:
    packed = pack(make_result().model_dump_json().encode())
    assert pack(packed) == packed


def test_a_bomb_is_refused_after_inflating_one_byte_past_the_limit() -> None:
    bomb = zlib.compress(b" " * (64 * MAX_MESSAGE_BYTES), 9)  # 64 MiB of spaces in ~65 KB
    with pytest.raises(PayloadTooLarge, match="over the 1048576-byte limit"):
        unpack(bomb)
    exactly = zlib.compress(b"{}" + b" " * (MAX_MESSAGE_BYTES - 2))
    assert len(unpack(exactly)) == MAX_MESSAGE_BYTES


@pytest.mark.parametrize(("what", "payload"), [
    ("corrupt", b"\x78\x9c" + b"\x00\xff" * 20),
    ("truncated", zlib.compress(b'{"a": "' + b"b" * 5000 + b'"}')[:-10]),
    ("trailing bytes", zlib.compress(b"{}") + b"{}"),
])
def test_a_broken_zlib_stream_is_a_payload_error(what: str, payload: bytes) -> None:
    with pytest.raises(PayloadError):
        unpack(payload)
