"""The HTML report: one self-contained page with the table and four PNG plots."""

from __future__ import annotations

import base64
import struct
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from collector.compare import ComparisonRow, compare, format_table, render_html, write_html
from collector.compare.report import FIG_DPI, FIG_SIZE_IN
from collector.records import CitedBaseline
from shared.catalogue import load_catalogue
from shared.errors import MissingExtraError
from shared.schema import BenchmarkResult
from tests.compare.helpers import dc_float, edge_int8, summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def sample_rows() -> tuple[list[ComparisonRow], dict[str, BenchmarkResult]]:
    edge = edge_int8(avg_power_w=5.0)
    no_raw = dc_float(latencies=None)               # CDF from summary percentiles
    cited = CitedBaseline(network="vww_96", hardware="cited GPU", hardware_key="nvidia-l4",
                          scenario="single-stream", latency_p50_ms=0.3, latency_p90_ms=0.4,
                          throughput_sps=3000.0, source="vendor table <1> & co")
    runs = {str(r.run_id): r for r in (edge, no_raw)}
    return compare([edge], [no_raw, cited], load_catalogue().entries), runs


def check_page(text: str) -> None:
    page = _Page()
    page.feed(text)
    page.close()
    assert {"html", "table", "img"} <= set(page.tags)
    assert len(page.images) == 4
    expected = (int(FIG_SIZE_IN[0] * FIG_DPI), int(FIG_SIZE_IN[1] * FIG_DPI))
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png_size(data) == expected


def test_report_is_html_with_four_png_plots(tmp_path: Path) -> None:
    rows, runs = sample_rows()
    assert len(rows) == 2
    path = write_html(tmp_path / "report.html", rows, runs)
    text = path.read_text(encoding="utf-8")
    check_page(text)
    assert "vendor table &lt;1&gt; &amp; co" in text          # escaped citation


def test_report_without_rows_still_has_four_plots() -> None:
    check_page(render_html([], {}))


def test_terminal_table_has_a_line_per_row() -> None:
    rows, _ = sample_rows()
    lines = format_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert "measured: dc-01" in lines[2] and "cited: cited GPU" in lines[3]


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    rows, runs = sample_rows()
    with pytest.raises(MissingExtraError, match=r"edgemeter\[collector\]"):
        render_html(rows, runs)


def test_summary_only_runs_plot_from_percentiles() -> None:
    edge = edge_int8(latencies=None, latency_ms=summary(2.0, 3.0))
    rows = compare([edge], [dc_float(latencies=None)], load_catalogue().entries)
    check_page(render_html(rows, {str(edge.run_id): edge}))
