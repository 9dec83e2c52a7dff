"""Turn one MQTT message into a wire model or a :class:`Rejection`, never an error.

:func:`read` handles every kind the collector subscribes to (``result``, ``status``,
``telemetry``, ``progress``, ``ack``, ``monitor``); :func:`ingest` is the same for result topics only. Both are
pure: no I/O, no clock. Checks, in order (the first failing one is the reason):

=============== =================================================================================
code            rejected when
=============== =================================================================================
too-large       the payload, or the JSON a compressed one inflates to, is over
                :data:`MAX_PAYLOAD_BYTES` (1 MiB)
topic           the topic is not ``edgemeter/v1/{fleet}/{device_id}/{kind}`` of a kind read here
not-zlib        the payload starts like a zlib stream (``0x78``) but is corrupt or truncated
not-utf8        the payload is not UTF-8
not-json        not strict JSON (``NaN``, ``Infinity``, numbers that overflow a double, nesting
                deeper than the parser allows)
not-object      JSON, but not an object
duplicate-key   an object names the same key twice (readers disagree on which one counts: the
                store's ``run_id`` column would take the last, SQL's ``json_extract`` the first)
schema-version  ``schema_version`` missing, not an integer (``2.0`` is refused) or not one this
                collector reads (results: 1 and 2; the reason says which)
invalid         schema validation failed (the reason names the first failing fields)
unstorable      valid, but holds what a database cannot keep: NUL or unpaired surrogate characters
                in a string, or a ``seq`` beyond 64 bits
mismatch        the topic's fleet or device_id differs from the payload's
error           anything unforeseen (logged with a traceback; should not happen)
=============== =================================================================================

A payload is JSON or, on any topic, that JSON compressed as one zlib stream (:mod:`shared.payload`:
the agent compresses results over 1 KiB); the checks after ``topic`` apply to the JSON.

Speed. A valid message is parsed and validated once, by pydantic's own JSON parser
(``Model.model_validate_json``), which already refuses invalid UTF-8, unpaired surrogates, and
(through the schema's ``allow_inf_nan=False`` on every float) ``NaN`` and infinities; integers are
bounded to 64 bits by the schema. What it lets through and a database cannot keep is a NUL
character, which JSON can only spell ``\\u0000``: one byte search finds it, and a key given twice,
which only a second parse by the standard library's C scanner (with a hook that sees each object's
pairs) finds. Only a message that
fails takes the slow path (:func:`_diagnose`), which parses it again step by step to say exactly
why, with the codes above.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.messages import MESSAGES_VERSION, JobAck, Progress, Status, Telemetry
from shared.monitoring import MonitorWindow
from shared.payload import PayloadError, PayloadTooLarge, is_compressed, unpack
from shared.schema import SUPPORTED_SCHEMA_VERSIONS, BenchmarkResult
from shared.topics import TopicAddress, TopicKind, Topics

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MODELS",
    "Message",
    "Rejection",
    "ingest",
    "read",
]

MAX_PAYLOAD_BYTES = 1_048_576
MAX_REASON_CHARS = 400
_MAX_INT64 = 2**63 - 1
_SHOWN_ERRORS = 3
_NUL_ESCAPE = b"\\u0000"

Message = BenchmarkResult | Status | Telemetry | Progress | JobAck | MonitorWindow
"""What :func:`read` returns for a valid message."""

MODELS: dict[TopicKind, type[BaseModel]] = {
    TopicKind.RESULT: BenchmarkResult,
    TopicKind.STATUS: Status,
    TopicKind.TELEMETRY: Telemetry,
    TopicKind.PROGRESS: Progress,
    TopicKind.ACK: JobAck,
    TopicKind.MONITOR: MonitorWindow,
}
"""The topic kinds the collector reads, and the model of each."""

_VERSIONS: dict[TopicKind, frozenset[int]] = {
    kind: SUPPORTED_SCHEMA_VERSIONS if kind is TopicKind.RESULT else frozenset({MESSAGES_VERSION})
    for kind in MODELS
}


@dataclass(frozen=True)
class Rejection:
    """Why a message was not accepted: a stable ``code`` and a one-line ``reason`` for people."""

    code: str
    reason: str

    def __str__(self) -> str:
        return self.reason


def _clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line (a field name from the payload may hold a newline or any control
    character: each is shown escaped) and at most ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any, limit: int = 40) -> str:
    """A short, safe rendering of a user value inside a reason."""
    return _clip(repr(value), limit)


class _NotStrictJson(ValueError):
    pass


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of :func:`json.loads` that refuses an object naming a key twice."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"the key {_show(key)} appears twice in one object")
            seen.add(key)
    return data


def _duplicate_key(payload: bytes) -> str | None:
    """Why ``payload`` (JSON that already validated) is refused for a repeated key, or None."""
    try:
        json.loads(payload, object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        return str(err)
    return None


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


def _validation_reason(err: ValidationError, what: str) -> str:
    parts = []
    errors = err.errors(include_url=False, include_input=False)
    for detail in errors[:_SHOWN_ERRORS]:
        loc = ".".join(_clip(str(p), 40) for p in detail["loc"]) or "(root)"
        parts.append(f"{loc}: {detail['msg']}")
    more = len(errors) - _SHOWN_ERRORS
    suffix = f" (+{more} more)" if more > 0 else ""
    return f"invalid {what}: " + "; ".join(parts) + suffix


def _diagnose(kind: TopicKind, payload: bytes, fast: Exception) -> Rejection:
    """Why a message the fast path refused (``fast``) is refused, step by step (rare, slow)."""
    what = kind.value
    try:
        text = payload.decode("utf-8")
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
    supported = _VERSIONS[kind]
    if type(version) is not int or version not in supported:
        readable = ", ".join(str(v) for v in sorted(supported))
        return Rejection(
            "schema-version",
            f"unsupported schema_version {_show(version)} (this collector reads {readable})",
        )
    why = _unstorable(data)
    if why is not None:
        return Rejection("unstorable", f"{what} cannot be stored: {why}")
    if isinstance(fast, ValidationError):
        if any(e["type"] == "json_invalid" for e in fast.errors()):
            return Rejection("not-json", _clip(f"payload is not JSON: {fast.errors()[0]['msg']}"))
        return Rejection("invalid", _clip(_validation_reason(fast, what)))
    return Rejection("invalid", _clip(f"invalid {what}: {type(fast).__name__}: {fast}"))


def _read(topic: str, payload: bytes, kinds: frozenset[TopicKind]) -> Message | Rejection:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(
            "too-large", f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} limit"
        )
    address = Topics.parse(topic)
    if address is None or address.kind not in kinds:
        wanted = "result" if kinds == {TopicKind.RESULT} else "collector"
        return Rejection("topic", f"topic {_show(topic, 120)} is not an edgemeter {wanted} topic")
    payload = bytes(payload)
    if is_compressed(payload):
        try:
            payload = unpack(payload, MAX_PAYLOAD_BYTES)
        except PayloadTooLarge as err:
            return Rejection("too-large", str(err))
        except PayloadError as err:
            return Rejection("not-zlib", _clip(str(err)))
    model = MODELS[address.kind]
    try:
        message: Message = model.model_validate_json(payload)  # type: ignore[assignment]
    except (ValidationError, ValueError, TypeError, OverflowError, RecursionError) as err:
        return _diagnose(address.kind, payload, err)
    if "schema_version" not in message.model_fields_set:  # the models default it; the wire may not
        return Rejection("schema-version", "payload has no schema_version")
    duplicate = _duplicate_key(payload)
    if duplicate is not None:
        return Rejection("duplicate-key", f"payload is ambiguous JSON: {duplicate}")
    if _NUL_ESCAPE in payload:  # rare: look closer (an escaped backslash may precede it)
        why = _unstorable(json.loads(payload))
        if why is not None:
            return Rejection("unstorable", f"{address.kind.value} cannot be stored: {why}")
    if isinstance(message, BenchmarkResult) and message.seq > _MAX_INT64:
        return Rejection("unstorable", "result cannot be stored: seq is beyond 64 bits")
    return _check_address(address, message)


def _check_address(address: TopicAddress, message: Message) -> Message | Rejection:
    mismatch = Topics.check(address, message)
    return Rejection("mismatch", mismatch) if mismatch is not None else message


_ALL = frozenset(MODELS)
_RESULTS = frozenset({TopicKind.RESULT})


def read(topic: str, payload: bytes) -> Message | Rejection:
    """Parse and validate one message on any topic kind in :data:`MODELS`; returns the model
    (:class:`BenchmarkResult`, :class:`Status`, ...) or why it was rejected.

    Never raises: an unforeseen failure becomes a ``Rejection`` with code ``error``.
    """
    try:
        return _read(topic, payload, _ALL)
    except Exception as err:  # the collector must survive any payload
        logger.exception("unexpected failure while reading a message on %r", topic)
        return Rejection("error", _clip(f"could not be read: {type(err).__name__}: {err}"))


def ingest(topic: str, payload: bytes) -> BenchmarkResult | Rejection:
    """:func:`read` for result topics only: the result, or why it was rejected. Never raises."""
    try:
        out = _read(topic, payload, _RESULTS)
    except Exception as err:  # the collector must survive any payload
        logger.exception("unexpected failure while ingesting a message on %r", topic)
        return Rejection("error", _clip(f"could not be read: {type(err).__name__}: {err}"))
    assert isinstance(out, (BenchmarkResult, Rejection))
    return out
