"""Write stored results as CSV, Parquet or JSON Lines.

* ``csv`` and ``parquet`` hold one flat row per result: nested objects are joined with ``_``
  (``latency_ms.p50`` -> ``latency_ms_p50``, ``labels.site`` -> ``labels_site``) and lists are
  JSON-encoded strings (``model_inputs``, ``latencies_buckets``). Columns are the union over all
  rows in first-seen order; a missing value is empty (CSV) or null (Parquet).
* ``jsonl`` holds each result exactly as it travels on the wire (one JSON object a line), so an
  export can be read back with ``BenchmarkResult.model_validate_json`` or published again.

Parquet needs pyarrow (the ``collector`` extra), imported only for that format.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

from collector.errors import StoreError
from shared.errors import ConfigError, MissingExtraError
from shared.schema import BenchmarkResult

__all__ = ["FORMATS", "ExportFormat", "export_results", "flat_rows", "flatten"]

ExportFormat = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl")


def flatten(value: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flatten nested dicts with ``_``; lists become JSON strings; scalars stay as they are."""
    out = {} if out is None else out
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{prefix}_{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value, separators=(",", ":"))
    else:
        out[prefix] = value
    return out


def flat_rows(results: Iterable[BenchmarkResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flattened rows and the union of their columns.

    An optional object that is null in one row and filled in another (``energy``) would give both
    an ``energy`` column and ``energy_*`` columns; the bare one is dropped when it is always null.
    """
    rows = [flatten(r.model_dump(mode="json")) for r in results]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    names = list(columns)
    parents = {n for n in names if any(other.startswith(n + "_") for other in names)}
    drop = {n for n in parents if all(row.get(n) is None for row in rows)}
    return [n for n in names if n not in drop], rows


def _write_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]], stream: TextIO) -> None:
    writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})


def _column_kind(values: list[Any]) -> str:
    """``float`` for ints mixed with floats, ``str`` for other mixtures, else ``same``."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {int, float}:
        return "float"
    return "str" if len(kinds) > 1 else "same"


def _write_parquet(columns: Sequence[str], rows: Sequence[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MissingExtraError("collector", "pyarrow") from err
    arrays = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        kind = _column_kind(values)
        if kind == "float":
            values = [None if v is None else float(v) for v in values]
        elif kind == "str":
            values = [None if v is None else str(v) for v in values]
        arrays[column] = pa.array(values)
    try:
        pq.write_table(pa.table(arrays), path)
    except OSError as err:
        raise StoreError(f"cannot write {path}: {err}; check the folder exists and is writable") \
            from err


def export_results(
    results: Sequence[BenchmarkResult],
    fmt: str,
    output: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Write ``results`` as ``fmt`` to ``output`` (a file) or ``stream``; returns the row count.

    CSV and JSON Lines go to ``stream`` when ``output`` is None; Parquet needs ``output``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise ConfigError("parquet is binary: give --output PATH")
        columns, rows = flat_rows(results)
        _write_parquet(columns, rows, output)
        return len(rows)
    if output is None and stream is None:
        raise ConfigError("export needs an output file or stream")
    try:
        handle = output.open("w", encoding="utf-8", newline="") if output else None
    except OSError as err:
        raise StoreError(f"cannot write {output}: {err.strerror or err}; check the path") from err
    target: TextIO = handle or stream  # type: ignore[assignment]
    try:
        if fmt == "csv":
            columns, rows = flat_rows(results)
            _write_csv(columns, rows, target)
        else:
            for result in results:
                target.write(result.model_dump_json() + "\n")
    finally:
        if handle is not None:
            handle.close()
    return len(results)
