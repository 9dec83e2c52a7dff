"""Exports stream from the store: what they write equals the in-memory export, chunk by chunk."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import export
from collector.export import StoredResults, export_results
from collector.stores.base import ResultFilter, Store
from shared.schema import BenchmarkResult, EnergyReport, PowerScope
from tests.factories import make_result


def mixed_results() -> list[BenchmarkResult]:
    """Rows whose columns differ (labels, energy), so the column union matters."""
    return [
        make_result(device_id="pi-01", seq=0),
        make_result(device_id="pi-02", seq=1, labels={"site": "lab"},
                    energy=EnergyReport(source="ina3221", scope=PowerScope.BOARD,
                                        estimated=False, avg_power_w=4.0,
                                        joules_per_inference=0.0123)),
        make_result(device_id="pi-01", seq=2, labels={"rack": "3"}),
        make_result(device_id="pi-03", seq=3),
        make_result(device_id="pi-01", seq=4),
    ]


class CountingStore:
    """A store wrapper that counts how often results are streamed and never lists them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.streams = 0

    def iter_results(self, flt: ResultFilter | None = None) -> Iterator[BenchmarkResult]:
        self.streams += 1
        return self.store.iter_results(flt)

    def list_results(self, flt: ResultFilter | None = None) -> list[BenchmarkResult]:
        raise AssertionError("an export must not load every result at once")


def stored(store: Store) -> tuple[list[BenchmarkResult], CountingStore]:
    results = mixed_results()
    store.add_results(results)
    return results, CountingStore(store)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_exports_from_the_store_equal_the_in_memory_export(store: Store, fmt: str) -> None:
    results, counting = stored(store)
    streamed, in_memory = io.StringIO(), io.StringIO()
    assert export_results(StoredResults(counting), fmt, stream=streamed) == len(results)  # type: ignore[arg-type]
    assert export_results(results, fmt, stream=in_memory) == len(results)
    assert streamed.getvalue() == in_memory.getvalue()
    assert counting.streams == (2 if fmt == "csv" else 1)  # columns first, then rows


def test_stored_results_apply_the_filter(store: Store) -> None:
    results, counting = stored(store)
    out = io.StringIO()
    view = StoredResults(counting, ResultFilter(device_id="pi-01", limit=2))  # type: ignore[arg-type]
    assert export_results(view, "jsonl", stream=out) == 2
    assert [BenchmarkResult.model_validate_json(line) for line in out.getvalue().splitlines()] \
        == [results[2], results[4]]


def test_parquet_written_in_chunks_equals_one_chunk(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    results, counting = stored(store)
    whole = tmp_path / "whole.parquet"
    export_results(results, "parquet", whole)
    monkeypatch.setattr(export, "STREAM_CHUNK_ROWS", 2)
    chunked = tmp_path / "chunked.parquet"
    assert export_results(StoredResults(counting), "parquet", chunked) == len(results)  # type: ignore[arg-type]
    assert pq.read_table(chunked).equals(pq.read_table(whole))
    data = pq.read_table(chunked).to_pydict()
    assert data["labels_site"] == [None, "lab", None, None, None]
    assert data["energy_joules_per_inference"] == [None, 0.0123, None, None, None]
    assert "energy" not in data
    assert pq.ParquetFile(chunked).metadata.num_row_groups == 3


def test_parquet_of_no_results_is_an_empty_file_that_reads_back(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "empty.parquet"
    assert export_results([], "parquet", target) == 0
    assert pq.read_table(target).num_rows == 0
