"""Write stored results as CSV, Parquet or JSON Lines.

* ``csv`` and ``parquet`` hold one flat row per result: nested objects are joined with ``_``
  (``latency_ms.p50`` -> ``latency_ms_p50``, ``labels.site`` -> ``labels_site``) and lists are
  JSON-encoded strings (``model_inputs``, ``latencies_buckets``). Columns are the union over all
  rows in first-seen order; a missing value is empty (CSV) or null (Parquet).
* ``jsonl`` holds each result exactly as it travels on the wire (one JSON object a line), so an
  export can be read back with ``BenchmarkResult.model_validate_json`` or published again.

Parquet needs pyarrow (the ``collector`` extra), imported only for that format.

Exports stream: results come from the store :data:`STREAM_CHUNK_ROWS` at a time and are written as
they come, so memory does not grow with the database. CSV and Parquet need their columns before
the first row, so they read the results twice (:class:`StoredResults` queries the store again for
the second pass); a result stored between the two passes is written with the columns found in the
first.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TextIO

from collector.errors import StoreError
from collector.stores.base import ResultFilter, Store
from shared.errors import ConfigError, MissingExtraError
from shared.schema import BenchmarkResult

__all__ = ["FORMATS", "ExportFormat", "StoredResults", "export_results", "flat_rows", "flatten"]

#: Rows handed to pyarrow at a time (one Parquet row group each).
STREAM_CHUNK_ROWS = 1000

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


class StoredResults:
    """The results ``flt`` selects in ``store``, streamed afresh each time it is iterated."""

    def __init__(self, store: Store, flt: ResultFilter | None = None) -> None:
        self.store = store
        self.flt = flt

    def __iter__(self) -> Iterator[BenchmarkResult]:
        return self.store.iter_results(self.flt)


def _flat(results: Iterable[BenchmarkResult]) -> Iterator[dict[str, Any]]:
    return (flatten(r.model_dump(mode="json")) for r in results)


class _Columns:
    """The union of the flattened rows' columns, in first-seen order, and the types seen in each."""

    def __init__(self) -> None:
        self.kinds: dict[str, set[type]] = {}

    def add(self, row: dict[str, Any]) -> None:
        for name, value in row.items():
            kinds = self.kinds.setdefault(name, set())
            if value is not None:
                kinds.add(type(value))

    def names(self) -> list[str]:
        """An optional object that is null in one row and filled in another (``energy``) would
        give both an ``energy`` column and ``energy_*`` columns; the bare one is dropped when it is
        always null."""
        names = list(self.kinds)
        parents = {n for n in names if any(other.startswith(n + "_") for other in names)}
        return [n for n in names if n not in parents or self.kinds[n]]


def flat_rows(results: Iterable[BenchmarkResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flattened rows (all in memory) and the union of their columns; see :class:`_Columns`."""
    rows = list(_flat(results))
    columns = _Columns()
    for row in rows:
        columns.add(row)
    return columns.names(), rows


def _scan(results: Iterable[BenchmarkResult]) -> _Columns:
    columns = _Columns()
    for row in _flat(results):
        columns.add(row)
    return columns


def _write_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]], stream: TextIO) -> int:
    writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
        count += 1
    return count


def _column_kind(kinds: set[type]) -> str:
    """``float`` for ints mixed with floats, ``str`` for other mixtures, else ``same``."""
    if kinds == {int, float}:
        return "float"
    return "str" if len(kinds) > 1 else "same"


def _write_parquet(columns: _Columns, rows: Iterable[dict[str, Any]], path: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MissingExtraError("collector", "pyarrow") from err
    names = columns.names()
    plain = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
    fields = []
    for name in names:
        kinds = columns.kinds[name]
        kind = _column_kind(kinds)
        if kind == "float":
            fields.append(pa.field(name, pa.float64()))
        elif kind == "str":
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, plain.get(next(iter(kinds)), pa.string())
                                   if kinds else pa.null()))
    schema = pa.schema(fields)
    convert = {f.name: (float if f.type == pa.float64() else str if f.type == pa.string() else None)
               for f in fields}

    def chunk_table(chunk: list[dict[str, Any]]) -> Any:
        arrays = []
        for field in fields:
            values = [row.get(field.name) for row in chunk]
            cast = convert[field.name]
            if cast is not None:
                values = [None if v is None else cast(v) for v in values]
            arrays.append(pa.array(values, type=field.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    count = 0
    try:
        with pq.ParquetWriter(path, schema) as writer:
            iterator = iter(rows)
            while chunk := list(islice(iterator, STREAM_CHUNK_ROWS)):
                writer.write_table(chunk_table(chunk))
                count += len(chunk)
            if count == 0:
                writer.write_table(schema.empty_table())
    except OSError as err:
        raise StoreError(f"cannot write {path}: {err}; check the folder exists and is writable") \
            from err
    return count


def export_results(
    results: Iterable[BenchmarkResult],
    fmt: str,
    output: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Write ``results`` as ``fmt`` to ``output`` (a file) or ``stream``; returns the row count.

    CSV and JSON Lines go to ``stream`` when ``output`` is None; Parquet needs ``output``. CSV and
    Parquet iterate ``results`` twice (columns first), so pass a list or a :class:`StoredResults`,
    not a one-shot iterator.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise ConfigError("parquet is binary: give --output PATH")
        return _write_parquet(_scan(results), _flat(results), output)
    if output is None and stream is None:
        raise ConfigError("export needs an output file or stream")
    columns = _scan(results).names() if fmt == "csv" else []
    if fmt == "csv" and not columns:
        # no results yet: still a header, so a reader (a spreadsheet, pandas) sees the columns
        columns = list(BenchmarkResult.model_fields)
    try:
        handle = output.open("w", encoding="utf-8", newline="") if output else None
    except OSError as err:
        raise StoreError(f"cannot write {output}: {err.strerror or err}; check the path") from err
    target: TextIO = handle or stream  # type: ignore[assignment]
    try:
        if fmt == "csv":
            return _write_csv(columns, _flat(results), target)
        count = 0
        for result in results:
            target.write(result.model_dump_json() + "\n")
            count += 1
        return count
    finally:
        if handle is not None:
            handle.close()
