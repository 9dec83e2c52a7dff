"""The HTML report: one self-contained page with the table and four PNG plots."""

from __future__ import annotations

import base64
import html
import io
import struct
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree

import pytest

from collector.compare import ComparisonRow, compare, format_table, render_html, write_html
from collector.compare.report import (
    COLUMNS,
    FIG_DPI,
    FIG_SIZE_IN,
    PLOTS,
    plot_cost,
    plot_joules,
    plot_latency_cdf,
    plot_roofline,
)
from collector.records import CitedBaseline
from shared.catalogue import load_catalogue
from shared.errors import MissingExtraError
from shared.schema import BenchmarkResult
from tests.compare.helpers import dc_float, edge_int8, summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Images (src, alt), table headers, and each table row's class and text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.alts: list[str] = []
        self.tags: list[str] = []
        self.headers: list[str] = []
        self.rows: list[tuple[str, str]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
            self.alts.append(dict(attrs).get("alt") or "")
        elif tag == "tr":
            self.rows.append((dict(attrs).get("class") or "", ""))
        elif tag == "th":
            self._cell = "th"

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell == "th":
            self.headers.append(data)
        elif self.rows:
            kind, text = self.rows[-1]
            self.rows[-1] = (kind, text + data + " ")


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def svg_text(fig: Figure) -> str:
    """Every text drawn in a chart (SVG with text kept as text, not paths)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    root = ElementTree.fromstring(buf.getvalue())
    return " ".join("".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text"))


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


def test_terminal_table_has_a_line_per_row_then_a_legend_and_numbered_sources() -> None:
    rows, _ = sample_rows()
    text = format_table(rows)
    lines = text.splitlines()
    assert "measured: dc-01" in lines[2] and "cited: cited GPU [1]" in lines[3]
    assert lines[4] == "" and "edge / baseline" in lines[5]
    assert "[1] cited GPU: vendor table <1> & co" in text.splitlines()


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    rows, runs = sample_rows()
    with pytest.raises(MissingExtraError, match=r"'collector' extra.*\[collector\]'"):
        render_html(rows, runs)


def test_summary_only_runs_plot_from_percentiles() -> None:
    edge = edge_int8(latencies=None, latency_ms=summary(2.0, 3.0))
    rows = compare([edge], [dc_float(latencies=None)], load_catalogue().entries)
    check_page(render_html(rows, {str(edge.run_id): edge}))


def test_each_row_is_followed_by_its_own_notes_and_a_shared_note_is_said_once() -> None:
    rows, runs = sample_rows()
    common = [n for n in rows[0].notes if n in rows[1].notes]
    assert common  # the sample's rows share a note
    text = render_html(rows, runs)
    page = parse(text)
    body = [r for r in page.rows if r[0] in ("", "about")][1:]        # skip the header row
    assert [kind for kind, _ in body] == ["", "about", "", "about"]
    measured_notes, cited_notes = body[1][1], body[3][1]
    assert "baseline MACs not cited" in cited_notes and "MACs" not in measured_notes
    assert "vendor table" not in measured_notes
    assert "source [1]" in cited_notes and "[1]" in body[2][1]
    for note in common:
        assert text.count(html.escape(note)) == 1                    # once, under the table
        assert "also notes N1" in measured_notes and "also notes N1" in cited_notes
    assert text.count("vendor table &lt;1&gt; &amp; co") == 1


def test_the_cdf_gives_seventeen_runs_seventeen_different_looks() -> None:
    from collector.compare.report import line_styles

    for count in (3, 17, 25):
        styles = line_styles(count)
        assert len(set(styles)) == count


def test_cited_figures_notes_travel_with_the_row() -> None:
    edge = edge_int8()
    cited = CitedBaseline(network="vww_96", hardware="MCU", scenario="single-stream",
                          throughput_sps=10.0, source="a results file", notes="latency is 1/throughput")
    (row,) = compare([edge], [cited], load_catalogue().entries)
    assert any("latency is 1/throughput" in n for n in row.notes)
    assert "latency is 1/throughput" in parse(render_html([row], {})).rows[-1][1]


def test_headers_give_units_and_which_direction_favours_the_edge() -> None:
    page = parse(render_html(*sample_rows()))
    headers = page.headers[-len(COLUMNS):]  # the case study's table comes first
    assert headers == [c.long for c in COLUMNS]
    by_short = {c.short: c.long for c in COLUMNS}
    assert "inferences" in by_short["break-even"] and "days" in by_short["break-even"]
    for short in ("$/M edge", "$/M base", "$/M cloud"):
        assert "USD per million inferences" in by_short[short]
    for short in ("p50 x", "thr x", "J/inf x"):
        assert "edge / baseline" in by_short[short] and "edge" in by_short[short].split("(")[1]


def test_break_even_cell_carries_its_unit_or_its_reason() -> None:
    rows, runs = sample_rows()
    cells = [text for kind, text in parse(render_html(rows, runs)).rows if kind == ""][1:]
    assert all("inferences (" in c or "- (" in c for c in cells)


def test_every_chart_says_which_direction_is_better() -> None:
    text = render_html(*sample_rows())
    directions = ["lower is better", "lower is better", "lower is better", "higher is better"]
    for plot, alt, direction in zip(PLOTS, parse(text).alts, directions, strict=True):
        assert direction in alt, plot.title
        assert f"<h2>{plot.title}</h2>" in text


def test_latency_and_energy_charts_name_their_units() -> None:
    rows, runs = sample_rows()
    assert "latency per query (ms" in svg_text(plot_latency_cdf(rows, runs))
    joules = svg_text(plot_joules(rows))
    assert "joules per inference" in joules and "mJ" in joules


def test_cost_chart_shows_rows_without_a_price_as_not_costed() -> None:
    mcu = CitedBaseline(network="vww_96", hardware="an MCU board", scenario="single-stream",
                        throughput_sps=10.0, source="a results file")      # no catalogue key
    rows = compare([edge_int8(avg_power_w=5.0)], [mcu], load_catalogue().entries)
    text = svg_text(plot_cost(rows))
    assert "USD per million inferences" in text
    assert "an MCU board" in text and "not costed: no hardware key" in text


def test_roofline_draws_the_catalogue_roof_on_named_axes() -> None:
    rows, _ = sample_rows()                      # edge on raspberry-pi-4: 0.096 int8 TOPS, 12.8 GB/s
    text = svg_text(plot_roofline(rows))
    assert "arithmetic intensity: ops per byte" in text
    assert "achieved ops per second" in text
    assert "peak compute 96 Gop/s" in text and "memory bandwidth 12.8 GB/s" in text
    assert "cited rows are not drawn" in text
