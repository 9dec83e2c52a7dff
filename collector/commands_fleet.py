"""Fleet-side store commands: ``models add|ls``, ``dead-letters ls|show|replay|purge``, and the
handler of ``fleet gaps`` (its parser lives with ``fleet`` in :mod:`edgemeter.commands.fleet`,
which calls :func:`fleet_gaps` here).

``models add FILE`` keeps a model file in the database so agents can fetch it for remote jobs
(``GET /models/SHA256`` of ``collector serve --http``). It must be an ONNX or TFLite model, told by
its content (TFLite's ``TFL3`` file identifier at byte 4; ONNX's protobuf starting with its
``ir_version`` field), and be named as jobs name models (``NAME.onnx`` or ``NAME.tflite``).

``dead-letters ls`` counts the dead letters by reason; with ``--reason`` it lists that reason's
letters. ``replay`` runs letters through today's validation (:mod:`collector.dead_letters`): what
validates now is stored and leaves the dead letters. ``purge`` deletes by id, or all with
``--all``.

All need the ``collector`` extra and never create a database (a missing SQLite file is an error).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import string
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collector.monitoring_settings import HistoryRetention
from collector.stores.base import Store, open_store
from shared.errors import ConfigError

__all__ = ["fleet_gaps", "model_format", "register", "register_prune"]

DB_HELP = "results database: sqlite:///PATH.db (relative), sqlite:////ABS/PATH.db or postgresql://"
#: A model name as :class:`shared.messages.ModelRef` accepts it.
MODEL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}\.(onnx|tflite)$")
#: The largest ONNX ``ir_version`` taken as plausible (version 11 is current in 2026).
MAX_ONNX_IR_VERSION = 100
SHOW_BYTES = 4096
#: ``models add`` refuses larger files unless ``--max-mb`` says otherwise.
MAX_MODEL_MB = 256.0


def model_format(content: bytes) -> str | None:
    """``tflite`` or ``onnx`` by the file's first bytes, or None when it is neither.

    TFLite: a FlatBuffer whose file identifier ``TFL3`` sits at bytes 4-7. ONNX: a protobuf
    ``ModelProto``, which serialises field 1 (``ir_version``, a varint) first: byte 0 is ``0x08``
    and the varint after it a small positive number.
    """
    if len(content) >= 8 and content[4:8] == b"TFL3":
        return "tflite"
    if len(content) >= 2 and content[0] == 0x08:
        value, shift = 0, 0
        for byte in content[1:11]:
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return "onnx" if 1 <= value <= MAX_ONNX_IR_VERSION else None
    return None


def register(subparsers: Any) -> None:
    """Add ``models`` and ``dead-letters`` to the root parser."""
    models = subparsers.add_parser(
        "models", help="keep model files for remote jobs in the collector's database",
        description="Keep model files (ONNX, TFLite) in the collector's database, by content, so "
        "agents can fetch them for jobs (`edgemeter fleet run --model SHA256:NAME`).",
    )
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    add = models_sub.add_parser("add", help="store a model file (ONNX or TFLite)",
                                description="Store a model file by its sha256; the same content "
                                "again changes nothing.")
    add.add_argument("file", type=Path, metavar="FILE", help="NAME.onnx or NAME.tflite")
    add.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    add.add_argument("--sha256", metavar="HEX", type=str.lower,
                     help="refuse the file unless its sha256 is this (as published with it)")
    add.add_argument("--max-mb", type=float, default=MAX_MODEL_MB, metavar="MB",
                     help=f"refuse files larger than this (default {MAX_MODEL_MB:g} MiB): every "
                     "model is served to boards and kept in their caches")
    add.set_defaults(func=_models_add)
    ls = models_sub.add_parser("ls", help="list stored models", description="List stored models.")
    ls.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_models_ls)

    letters = subparsers.add_parser(
        "dead-letters", help="inspect, replay and purge rejected messages",
        description="Messages the collector rejected, kept with why: count them by reason, show "
        "one, replay them through today's validation, or purge them.",
    )
    letters_sub = letters.add_subparsers(dest="letters_command", metavar="ACTION", required=True)
    dls = letters_sub.add_parser("ls", help="count dead letters by reason (or list one reason's)",
                                 description="Count dead letters by reason; with --reason, list "
                                 "that reason's letters.")
    dls.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    dls.add_argument("--reason", help="list the letters with exactly this reason")
    dls.add_argument("--limit", type=int, default=100, help="newest N letters (default 100)")
    dls.add_argument("--json", action="store_true", help="print JSON")
    dls.set_defaults(func=_letters_ls)
    show = letters_sub.add_parser("show", help="one dead letter with its payload",
                                  description="Show one dead letter: where, when, why, how often "
                                  f"and its payload (text, or hex for binary; first {SHOW_BYTES} "
                                  "bytes unless --full).")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    show.add_argument("--full", action="store_true", help="the whole stored payload")
    show.set_defaults(func=_letters_show)
    replay = letters_sub.add_parser("replay", help="validate dead letters again; store what passes",
                                    description="Run dead letters (all, or --id) through today's "
                                    "validation; what validates is stored and leaves the dead "
                                    "letters. Exit 1 when some are still rejected.")
    replay.add_argument("--id", type=int, action="append", dest="ids", metavar="ID",
                        help="only this letter (repeatable)")
    replay.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    replay.set_defaults(func=_letters_replay)
    purge = letters_sub.add_parser("purge", help="delete dead letters (--id ID or --all)",
                                   description="Delete dead letters by id, or all of them.")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, action="append", dest="ids", metavar="ID",
                       help="this letter (repeatable)")
    which.add_argument("--all", action="store_true", help="every dead letter")
    purge.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    purge.set_defaults(func=_letters_purge)


def _open(url: str) -> Store:
    return open_store(url, must_exist=True)


# -- models -------------------------------------------------------------------------------------


def _models_add(args: argparse.Namespace) -> int:
    path: Path = args.file
    max_bytes = int(args.max_mb * 2**20)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path} is {size / 2**20:.1f} MiB, over the {args.max_mb:g} MiB "
                              "limit for models: give --max-mb if boards should fetch it")
        content = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
    if len(content) > max_bytes:  # it grew since stat
        raise ConfigError(f"{path} is over the {args.max_mb:g} MiB limit for models")
    sha256 = hashlib.sha256(content).hexdigest()
    if args.sha256 is not None and args.sha256 != sha256:
        raise ConfigError(f"{path} has sha256 {sha256}, not the {args.sha256} given with "
                          "--sha256: refused (a damaged or different file)")
    kind = model_format(content)
    if kind is None:
        raise ConfigError(f"{path} is not an ONNX or TFLite model (neither an ONNX protobuf nor a "
                          "TFL3 FlatBuffer by its first bytes)")
    if not MODEL_NAME.match(path.name) or not path.name.endswith(f".{kind}"):
        raise ConfigError(f"{path} holds a {kind} model: name it NAME.{kind} (letters, digits, "
                          "'.', '_', '-'), as jobs name the models agents fetch")
    store = open_store(args.db)
    try:
        stored = store.add_model(path.name, content)
        assert stored == sha256
    finally:
        store.close()
    print(f"{sha256}  {path.name} ({len(content)} bytes, {kind}); run it with "
          f"`edgemeter fleet run --model {sha256}:{path.name}`")
    return 0


def _models_ls(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        rows = store.list_models()
    finally:
        store.close()
    if args.json:
        _dump([{"sha256": m.sha256, "name": m.name, "size_bytes": m.size_bytes,
                "added_at": m.added_at.isoformat()} for m in rows])
        return 0
    _table(["sha256", "name", "bytes", "added_at (UTC)"],
           [[m.sha256, m.name, str(m.size_bytes), _when(m.added_at)] for m in rows],
           right={2}, empty="(no models: `edgemeter models add FILE --db URL` stores one)")
    return 0


# -- dead letters -------------------------------------------------------------------------------


def _letters_ls(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        if args.reason is None:
            counts = store.count_dead_letters()
        else:
            letters = store.list_dead_letters(args.limit, reason=args.reason)
    finally:
        store.close()
    if args.reason is None:
        if args.json:
            _dump([{"reason": r, "letters": n, "messages": m} for r, n, m in counts])
        else:
            _table(["letters", "messages", "reason"],
                   [[str(n), str(m), r] for r, n, m in counts], right={0, 1},
                   empty="(no dead letters)")
        return 0
    if args.json:
        _dump([_letter_json(d) for d in letters])
        return 0
    _table(["id", "device", "count", "first seen (UTC)", "last seen (UTC)", "bytes", "topic"],
           [[str(d.id), d.device_id or "-", str(d.count), _when(d.received_at),
             _when(d.last_seen or d.received_at), str(d.size_bytes), d.topic] for d in letters],
           right={0, 2, 5}, empty=f"(no dead letters with reason {args.reason!r})")
    return 0


def _letters_show(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        letter = store.get_dead_letter(args.id)
    finally:
        store.close()
    if letter is None:
        raise ConfigError(f"no dead letter {args.id}: `edgemeter dead-letters ls --db URL "
                          "--reason REASON` lists their ids")
    size = letter.size_bytes if letter.size_bytes is not None else len(letter.payload)
    print(f"id:          {letter.id}")
    print(f"topic:       {letter.topic}")
    print(f"device:      {letter.device_id or '-'}")
    print(f"reason:      {letter.reason}")
    print(f"count:       {letter.count}")
    print(f"first seen:  {letter.received_at.isoformat()}")
    print(f"last seen:   {(letter.last_seen or letter.received_at).isoformat()}")
    print(f"size:        {size} bytes" + (f" ({len(letter.payload)} kept)" if letter.truncated
                                           else ""))
    print(f"sha256:      {letter.sha256 or '-'}")
    shown = letter.payload if args.full else letter.payload[:SHOW_BYTES]
    print("payload:")
    print(_printable(shown))
    if len(shown) < len(letter.payload):
        print(f"... ({len(letter.payload) - len(shown)} more bytes: --full shows them)")
    return 0


def _letters_replay(args: argparse.Namespace) -> int:
    from collector.dead_letters import replay

    store = _open(args.db)
    try:
        outcomes = replay(store, args.ids)
    finally:
        store.close()
    for outcome in outcomes:
        print(f"{outcome.letter_id}: {'stored' if outcome.stored else 'kept'}: {outcome.detail}")
    stored = sum(o.stored for o in outcomes)
    print(f"{stored} of {len(outcomes)} dead letters validate now and were stored",
          file=sys.stderr)
    return 0 if stored == len(outcomes) else 1


def _letters_purge(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        deleted = store.delete_dead_letters(None if args.all else args.ids)
    finally:
        store.close()
    print(f"deleted {deleted} dead letters")
    return 0


def _letter_json(letter: Any) -> dict[str, Any]:
    return {"id": letter.id, "device_id": letter.device_id, "topic": letter.topic,
            "reason": letter.reason, "count": letter.count,
            "first_seen": letter.received_at.isoformat(),
            "last_seen": (letter.last_seen or letter.received_at).isoformat(),
            "size_bytes": letter.size_bytes, "sha256": letter.sha256}


def _printable(payload: bytes) -> str:
    """The payload as text when it is printable UTF-8, else as a hex dump."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in string.whitespace for c in text):
        return text
    return "\n".join(f"{offset:08x}  {payload[offset:offset + 16].hex(' ')}"
                     for offset in range(0, len(payload), 16))


# -- fleet gaps ---------------------------------------------------------------------------------


def fleet_gaps(args: argparse.Namespace) -> int:
    """``edgemeter fleet gaps --db URL [--device ID] [--json]``: missing seq ranges per device."""
    store = _open(args.db)
    try:
        gaps = store.seq_gaps(device_id=args.device)
    finally:
        store.close()
    if args.json:
        _dump([{"device_id": g.device_id, "fleet": g.fleet, "first_missing": g.first_missing,
                "last_missing": g.last_missing, "missing": g.missing} for g in gaps])
        return 0
    _table(["device", "fleet", "first missing", "last missing", "missing"],
           [[g.device_id, g.fleet, str(g.first_missing), str(g.last_missing), str(g.missing)]
            for g in gaps], right={2, 3, 4},
           empty="(no gaps: every device's seq numbers are contiguous between its results)")
    return 0


# -- collector prune ----------------------------------------------------------------------------


def register_prune(collector_sub: Any) -> None:
    """Add ``prune`` under ``edgemeter collector`` (called by :mod:`collector.commands`)."""
    keep = HistoryRetention()
    prune = collector_sub.add_parser(
        "prune", help="delete old results, and telemetry history past its retention",
        description="Delete results created more than --older-than DAYS ago (results are kept "
        "for ever without it). PostgreSQL drops whole month partitions (a month goes once all "
        "of it is older than the cutoff) and deletes older rows from the default partition; "
        "SQLite deletes the rows. Always applies the history retention: raw telemetry older "
        f"than --telemetry-raw-hours (default {keep.telemetry_raw_h:g}), 1-minute telemetry "
        f"aggregates older than --telemetry-1m-days ({keep.telemetry_1m_days:g}), monitor "
        f"windows older than --windows-days ({keep.monitor_windows_days:g}) and alerts resolved "
        f"more than --alerts-days ({keep.alerts_days:g}) ago. Run it from cron or a systemd "
        "timer, e.g. hourly.",
    )
    prune.add_argument("--older-than", type=float, metavar="DAYS",
                       help="age in days (created_at) beyond which results go")
    prune.add_argument("--telemetry-raw-hours", type=float, default=keep.telemetry_raw_h,
                       metavar="HOURS", help="keep every telemetry message this long")
    prune.add_argument("--telemetry-1m-days", type=float, default=keep.telemetry_1m_days,
                       metavar="DAYS", help="keep 1-minute telemetry aggregates this long")
    prune.add_argument("--windows-days", type=float, default=keep.monitor_windows_days,
                       metavar="DAYS", help="keep monitor windows this long")
    prune.add_argument("--alerts-days", type=float, default=keep.alerts_days,
                       metavar="DAYS", help="keep resolved alerts this long")
    prune.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    prune.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    if args.older_than is not None and args.older_than < 0:
        raise ConfigError("--older-than must be a number of days, 0 or more")
    try:
        retention = HistoryRetention(
            telemetry_raw_h=args.telemetry_raw_hours, telemetry_1m_days=args.telemetry_1m_days,
            monitor_windows_days=args.windows_days, alerts_days=args.alerts_days)
    except ValidationError as err:
        raise ConfigError("--telemetry-raw-hours, --telemetry-1m-days, --windows-days and "
                          "--alerts-days must be above 0") from err
    store = open_store(args.db, must_exist=True)
    try:
        if args.older_than is not None:
            print(store.prune(older_than_days=args.older_than))
        print(store.prune_history(retention))
    finally:
        store.close()
    return 0


# -- output -------------------------------------------------------------------------------------


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _dump(data: Sequence[dict[str, Any]]) -> None:
    json.dump(list(data), sys.stdout, indent=2)
    sys.stdout.write("\n")


def _table(header: list[str], rows: list[list[str]], *, right: set[int], empty: str) -> None:
    if not rows:
        print(empty)
        return
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print(line(header))
    for row in rows:
        print(line(row))
