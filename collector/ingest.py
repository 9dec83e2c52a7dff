"""Turn one MQTT message into a :class:`BenchmarkResult` or a :class:`Rejection`, never an error.

:func:`ingest` is pure: no I/O, no clock. Checks, in order (the first failing one is the reason):

=============== =================================================================================
code            rejected when
=============== =================================================================================
too-large       the payload is over :data:`MAX_PAYLOAD_BYTES` (1 MiB)
topic           the topic is not ``edgemeter/v1/{fleet}/{device_id}/result``
not-utf8        the payload is not UTF-8
not-json        not strict JSON (``NaN``, ``Infinity``, numbers that overflow a double, nesting
                deeper than the parser allows)
not-object      JSON, but not an object
schema-version  ``schema_version`` missing or not one this collector reads (the reason says which)
invalid         schema validation failed (the reason names the first failing fields)
unstorable      valid, but holds what a database cannot keep: NUL or unpaired surrogate characters
                in a string, or a ``seq`` beyond 64 bits
mismatch        the topic's fleet or device_id differs from the payload's
error           anything unforeseen (logged with a traceback; should not happen)
=============== =================================================================================
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.schema import SUPPORTED_SCHEMA_VERSIONS, BenchmarkResult
from shared.topics import TopicKind, Topics

logger = logging.getLogger(__name__)

__all__ = ["MAX_PAYLOAD_BYTES", "Rejection", "ingest"]

MAX_PAYLOAD_BYTES = 1_048_576
MAX_REASON_CHARS = 400
_MAX_INT64 = 2**63 - 1
_SHOWN_ERRORS = 3


@dataclass(frozen=True)
class Rejection:
    """Why a message was not accepted: a stable ``code`` and a one-line ``reason`` for people."""

    code: str
    reason: str

    def __str__(self) -> str:
        return self.reason


def _clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any, limit: int = 40) -> str:
    """A short, safe rendering of a user value inside a reason."""
    return _clip(repr(value), limit)


class _NotStrictJson(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotStrictJson(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJson(f"number {_clip(text, 24)} does not fit a double")
    return value


def _unstorable(obj: Any) -> str | None:
    """The first string (key or value) a database cannot keep, walked without recursion."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a string holds a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds an unpaired surrogate (\\ud800-\\udfff)"
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _validation_reason(err: ValidationError) -> str:
    parts = []
    errors = err.errors(include_url=False, include_input=False)
    for detail in errors[:_SHOWN_ERRORS]:
        loc = ".".join(_clip(str(p), 40) for p in detail["loc"]) or "(root)"
        parts.append(f"{loc}: {detail['msg']}")
    more = len(errors) - _SHOWN_ERRORS
    suffix = f" (+{more} more)" if more > 0 else ""
    return "invalid result: " + "; ".join(parts) + suffix


def _ingest(topic: str, payload: bytes) -> BenchmarkResult | Rejection:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(
            "too-large", f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} limit"
        )
    address = Topics.parse(topic)
    if address is None or address.kind is not TopicKind.RESULT:
        return Rejection("topic", f"topic {_show(topic, 120)} is not an edgemeter result topic")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as err:
        return Rejection("not-utf8", f"payload is not UTF-8 (bad byte at offset {err.start})")
    try:
        data = json.loads(text, parse_constant=_constant, parse_float=_finite_float)
    except _NotStrictJson as err:
        return Rejection("not-json", f"payload is not JSON: {err}")
    except json.JSONDecodeError as err:
        return Rejection("not-json", f"payload is not JSON: {err.msg} at offset {err.pos}")
    except RecursionError:
        return Rejection("not-json", "payload is not JSON that can be read: nested too deeply")
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        return Rejection("not-json", f"payload is not JSON that can be read: {_clip(str(err), 80)}")
    if not isinstance(data, dict):
        return Rejection("not-object", f"payload is a JSON {_json_kind(data)}, not an object")
    if "schema_version" not in data:
        return Rejection("schema-version", "payload has no schema_version")
    version = data["schema_version"]
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:
        readable = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        return Rejection(
            "schema-version",
            f"unsupported schema_version {_show(version)} (this collector reads {readable})",
        )
    try:
        result = BenchmarkResult.model_validate(data)
    except ValidationError as err:
        return Rejection("invalid", _clip(_validation_reason(err)))
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        return Rejection("invalid", _clip(f"invalid result: {type(err).__name__}: {err}"))
    why = _unstorable(data)
    if why is not None:
        return Rejection("unstorable", f"result cannot be stored: {why}")
    if result.seq > _MAX_INT64:
        return Rejection("unstorable", "result cannot be stored: seq is beyond 64 bits")
    if address.fleet != result.fleet or address.device_id != result.device_id:
        return Rejection(
            "mismatch",
            f"topic says {address.fleet}/{address.device_id} but the payload says "
            f"{_show(result.fleet)}/{_show(result.device_id)}",
        )
    return result


def ingest(topic: str, payload: bytes) -> BenchmarkResult | Rejection:
    """Parse and validate one message from ``topic``; returns the result or why it was rejected.

    Never raises: an unforeseen failure becomes a ``Rejection`` with code ``error``.
    """
    try:
        return _ingest(topic, payload)
    except Exception as err:  # the collector must survive any payload
        logger.exception("unexpected failure while ingesting a message on %r", topic)
        return Rejection("error", _clip(f"could not be read: {type(err).__name__}: {err}"))
