"""Showing comparison rows: a terminal table, and one self-contained HTML report with four plots.

The HTML report holds the table and four PNG plots embedded as base64 ``<img>`` tags: the latency
CDF of every run (from its raw latency histogram, else its summary percentiles; cited rows as
points), joules per inference, cost per million inferences, and a roofline (achieved ops/s against
arithmetic intensity on log axes, with each device's peak and memory-bandwidth lines).
matplotlib (the ``collector`` extra) is imported only when a report is drawn, and only its Agg
canvas is used: no pyplot, no global backend switch.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from collector.compare.cost import CostSettings
from collector.compare.engine import ComparisonRow, SideMetrics
from shared import latency as latency_codec
from shared.errors import ConfigError, MissingExtraError
from shared.schema import BenchmarkResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

FIG_SIZE_IN = (8.0, 4.5)
FIG_DPI = 100

TABLE_HEADERS = (
    "edge run", "device", "model", "baseline", "match", "scenario", "p50 x", "thr x", "J/inf x",
    "$/M edge", "$/M base", "$/M cloud", "break-even", "top-1",
)


def _num(value: float | None, fmt: str = "{:.3g}", suffix: str = "") -> str:
    return "-" if value is None else fmt.format(value) + suffix


def table_cells(row: ComparisonRow) -> list[str]:
    """The cells of one row, in :data:`TABLE_HEADERS` order."""
    base = row.baseline
    return [
        row.edge_run_id[:8],
        row.edge_device_id,
        row.model,
        f"{base.kind}: {base.label}" + (f" ({base.run_id[:8]})" if base.run_id else ""),
        row.match,
        row.scenario,
        _num(row.ratios.latency_p50, suffix="x"),
        _num(row.ratios.throughput, suffix="x"),
        _num(row.ratios.joules_per_inference, suffix="x"),
        _num(row.cost_per_million_usd.edge, "${:.3g}"),
        _num(row.cost_per_million_usd.baseline, "${:.3g}"),
        _num(row.cost_per_million_usd.baseline_cloud, "${:.3g}"),
        _num(row.break_even.inferences, "{:.3g}"),
        _num(row.fidelity.top1_agreement, "{:.0%}"),
    ]


def format_table(rows: Sequence[ComparisonRow]) -> str:
    """A plain-text table for the terminal."""
    cells = [list(TABLE_HEADERS)] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ plotting


def _new_figure() -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MissingExtraError("collector", "matplotlib") from err
    fig = Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _cdf_of_run(run: BenchmarkResult) -> tuple[list[float], list[float]]:
    if run.latencies is not None and run.latencies.count:
        raw = run.latencies
        total = raw.count
        xs, ys, seen = [], [], 0
        for bucket, count in zip(raw.buckets, raw.counts, strict=True):
            seen += count
            xs.append(latency_codec.bucket_value_ns(bucket, raw.rel_resolution) / 1e6)
            ys.append(seen / total)
        return xs, ys
    s = run.latency_ms
    return [s.min, s.p50, s.p90, s.p95, s.p99, s.p999, s.max], [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]


def _unique_sides(rows: Sequence[ComparisonRow]) -> list[tuple[str, str, SideMetrics]]:
    """(id, label, metrics) of every distinct run or citation, edges first."""
    sides: dict[str, tuple[str, str, SideMetrics]] = {}
    for row in rows:
        sides.setdefault(row.edge_run_id, (row.edge_run_id, f"{row.edge_device_id} {row.model}",
                                           row.edge_metrics))
    for row in rows:
        ref = row.baseline
        key = ref.run_id or ref.baseline_id or ref.label
        name = f"{ref.label} {ref.model or ''}".strip() if ref.kind == "measured" else ref.label
        sides.setdefault(key, (key, name, row.baseline_metrics))
    return list(sides.values())


def plot_latency_cdf(rows: Sequence[ComparisonRow], runs: Mapping[str, BenchmarkResult]) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    drawn = 0
    for key, label, side in _unique_sides(rows):
        run = runs.get(key)
        if run is not None:
            xs, ys = _cdf_of_run(run)
            ax.step(xs, ys, where="post", label=label)
            drawn += 1
            continue
        points = [(v, q) for v, q in ((side.latency_p50_ms, 0.5), (side.latency_p90_ms, 0.9))
                  if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o", label=f"{label} (cited)")
            drawn += 1
    if not drawn:
        _no_data(ax, "latencies")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("latency per query (ms, log)")
        ax.set_ylabel("fraction of queries")
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    ax.set_title("Latency CDF")
    return fig


def _bars(title: str, ylabel: str, items: Sequence[tuple[str, float, str]]) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    items = [i for i in items if i[1] is not None and i[1] > 0]
    if not items:
        _no_data(ax, ylabel)
    else:
        labels, values, colors = zip(*items, strict=True)
        positions = range(len(values))
        ax.bar(positions, values, color=colors)
        ax.set_xticks(list(positions), labels, rotation=20, ha="right", fontsize="small")
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.set_title(title)
    return fig


EDGE_COLOR, BASE_COLOR, CLOUD_COLOR = "tab:green", "tab:blue", "tab:orange"


def _color(rows: Sequence[ComparisonRow], key: str) -> str:
    return EDGE_COLOR if any(r.edge_run_id == key for r in rows) else BASE_COLOR


def plot_joules(rows: Sequence[ComparisonRow]) -> Figure:
    items = [(label, side.joules_per_inference, _color(rows, key))
             for key, label, side in _unique_sides(rows) if side.joules_per_inference is not None]
    return _bars("Energy per inference (green edge, blue baseline)", "joules per inference (log)",
                 items)


def plot_cost(rows: Sequence[ComparisonRow]) -> Figure:
    items: list[tuple[str, float, str]] = []
    for key, label, side in _unique_sides(rows):
        if side.cost_per_million_usd is not None:
            items.append((label, side.cost_per_million_usd, _color(rows, key)))
        if side.cloud_per_million_usd is not None:
            items.append((f"{label} (cloud)", side.cloud_per_million_usd, CLOUD_COLOR))
    return _bars("Cost per million inferences (green edge, blue baseline, orange cloud)",
                 "USD per million (log)", items)


def plot_roofline(rows: Sequence[ComparisonRow]) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    sides = _unique_sides(rows)
    points = [(label, s.arithmetic_intensity, s.ops_per_s) for _, label, s in sides
              if s.arithmetic_intensity and s.ops_per_s]
    if not points:
        _no_data(ax, "points with MACs and model size")
        ax.set_title("Roofline")
        return fig
    intensities = [ai for _, ai, _ in points]
    lo, hi = min(intensities) / 10, max(intensities) * 10
    roofs: dict[str, SideMetrics] = {}
    for _, _, s in sides:
        if s.hardware_key and s.peak_ops_per_s:
            roofs.setdefault(f"{s.hardware_key} {s.precision or ''}".strip(), s)
    for name, s in roofs.items():
        assert s.peak_ops_per_s is not None
        xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        if s.mem_bandwidth_gbs:
            ys = [min(s.peak_ops_per_s, x * s.mem_bandwidth_gbs * 1e9) for x in xs]
        else:
            ys = [s.peak_ops_per_s] * len(xs)
        ax.plot(xs, ys, "--", linewidth=1, label=f"roof: {name}")
    for label, ai, ops in points:
        ax.plot([ai], [ops], "o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (ops per weight byte, log)")
    ax.set_ylabel("ops per second (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    ax.set_title("Roofline: achieved vs peak")
    return fig


PLOTS: tuple[tuple[str, Callable[..., Figure]], ...] = (
    ("Latency CDF", plot_latency_cdf),
    ("Joules per inference", plot_joules),
    ("Cost per million inferences", plot_cost),
    ("Roofline", plot_roofline),
)


# ---------------------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f0f0f0; }
img { display: block; margin: 1em 0; max-width: 100%; }
"""


def render_html(
    rows: Sequence[ComparisonRow],
    runs: Mapping[str, BenchmarkResult],
    settings: CostSettings | None = None,
) -> str:
    """One self-contained HTML page: settings, the table, notes and the four plots."""
    settings = settings or CostSettings()
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>edgemeter: edge vs datacenter comparison</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>edgemeter: edge vs datacenter vs supercomputer</h1>",
        f"<p>{len(rows)} comparison row(s); tariff {settings.tariff_usd_per_kwh} USD/kWh, duty "
        f"cycle {settings.duty_cycle}, lifetime "
        f"{settings.lifetime_years or 'per catalogue entry'} years; generated "
        f"{esc(datetime.now(timezone.utc).isoformat(timespec='seconds'))}. Ratios are edge / "
        "baseline.</p>",
        "<table><thead><tr>",
        *(f"<th>{esc(h)}</th>" for h in TABLE_HEADERS),
        "</tr></thead><tbody>",
    ]
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in table_cells(row)) + "</tr>")
    parts.append("</tbody></table>")
    notes = sorted({n for row in rows for n in row.notes})
    sources = sorted({row.baseline.source for row in rows if row.baseline.source})
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    if sources:
        parts.append("<h2>Cited sources</h2><ul>"
                     + "".join(f"<li>{esc(s)}</li>" for s in sources) + "</ul>")
    for title, plot in PLOTS:
        fig = plot(rows, runs) if plot is plot_latency_cdf else plot(rows)
        parts.append(f"<h2>{esc(title)}</h2>")
        parts.append(f'<img alt="{esc(title)}" src="data:image/png;base64,{_png_base64(fig)}">')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(
    path: Path,
    rows: Sequence[ComparisonRow],
    runs: Mapping[str, BenchmarkResult],
    settings: CostSettings | None = None,
) -> Path:
    """Write :func:`render_html` to ``path``."""
    text = render_html(rows, runs, settings)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot write report {path}: {err.strerror}") from err
    logger.info("report written to %s", path)
    return Path(path)

