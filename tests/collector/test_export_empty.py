"""Exporting an empty database still gives a CSV header, so a reader sees the columns."""

from __future__ import annotations

import csv
import io

from collector.export import export_results


def test_an_empty_export_prints_the_header_of_a_result() -> None:
    out = io.StringIO()
    assert export_results([], "csv", stream=out) == 0
    header = next(csv.reader(io.StringIO(out.getvalue())))
    assert {"run_id", "device_id", "created_at", "latency_ms"} <= set(header)
