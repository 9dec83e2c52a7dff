"""Showing comparison rows: a terminal table, and one self-contained HTML report with four plots.

Both are written for a reader who has not seen ``docs/compare.md``: every column says its unit and
which direction is better, a cited baseline carries its source next to it (numbered footnotes in
the terminal; a line under its row in HTML, with the row's notes), and every chart says in its title
whether lower or higher is better.

The HTML report holds the table and four PNG plots embedded as base64 ``<img>`` tags:

1. the latency CDF of every run (from its raw latency histogram, else its summary percentiles;
   cited rows as p50/p90 points);
2. joules per inference, one bar per run or citation, the ones without an energy figure listed as such;
3. cost per million inferences (owned edge, owned baseline, baseline rented in the cloud), the ones
   without a price listed with the reason;
4. a roofline: achieved ops/s against arithmetic intensity (ops per byte of model weights), with
   the catalogue's roof of each device drawn as its two lines: peak compute and memory bandwidth.

matplotlib (the ``collector`` extra) is imported only when a report is drawn, and only its Agg
canvas is used: no pyplot, no global backend switch.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from collector.compare.case_study import case_study_html
from collector.compare.cost import CostSettings
from collector.compare.engine import ComparisonRow, SideMetrics
from shared.errors import ConfigError, MissingExtraError
from shared.schema import BenchmarkResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

FIG_SIZE_IN = (10.0, 6.0)
FIG_DPI = 100
LABEL_CHARS = 38
"""plot labels and terminal cells cut a cited row's hardware description to this many characters"""


@dataclass(frozen=True)
class Column:
    """One table column: a short terminal header, and the HTML header with unit and direction."""

    short: str
    long: str


COLUMNS: tuple[Column, ...] = (
    Column("edge run", "edge run id"),
    Column("device", "edge device"),
    Column("model", "model file"),
    Column("baseline", "baseline (measured run or cited result)"),
    Column("match", "matched by"),
    Column("scenario", "scenario"),
    Column("p50 x", "p50 latency, edge / baseline (below 1: edge is faster)"),
    Column("thr x", "throughput, edge / baseline (above 1: edge does more per second)"),
    Column("J/inf x", "energy per inference, edge / baseline (below 1: edge uses less)"),
    Column("$/M edge", "edge, owned: USD per million inferences"),
    Column("$/M base", "baseline, owned: USD per million inferences"),
    Column("$/M cloud", "baseline, rented in the cloud: USD per million inferences"),
    Column("break-even", "break-even of buying the edge device vs renting the baseline "
                         "(inferences, and days at the edge run's rate)"),
    Column("top-1", "top-1 agreement with the baseline (% of inputs)"),
)
TABLE_HEADERS = tuple(c.short for c in COLUMNS)

LEGEND = (
    "x: edge / baseline. p50 and J/inf below 1 and thr above 1 favour the edge device. "
    "$/M: USD per million inferences (owned: price over lifetime + electricity; cloud: hourly rate). "
    "break-even: inferences (and days) after which buying the edge device costs less than renting "
    "the baseline. -: not known (see docs/compare.md)."
)


def _num(value: float | None, fmt: str = "{:.3g}", suffix: str = "") -> str:
    return "-" if value is None else fmt.format(value) + suffix


def _short(label: str, limit: int = LABEL_CHARS) -> str:
    """A cited hardware description up to its first parenthesis, cut to ``limit`` characters."""
    head = label.split(" (", 1)[0]
    return head if len(head) <= limit else head[: limit - 1] + "…"


def break_even_text(row: ComparisonRow, *, with_reason: bool = False) -> str:
    """``1.5e+09 inferences (35.3 days)``, or ``-`` (with the reason when asked)."""
    be = row.break_even
    if be.inferences is None:
        return f"- ({be.reason})" if with_reason and be.reason else "-"
    days = f" ({be.days:.3g} days)" if be.days is not None else ""
    return f"{be.inferences:.3g} inferences{days}"


def table_cells(row: ComparisonRow, *, footnote: int | None = None,
                full_labels: bool = False) -> list[str]:
    """The cells of one row, in :data:`COLUMNS` order; ``footnote`` numbers a cited source."""
    base = row.baseline
    label = base.label if full_labels or base.kind == "measured" else _short(base.label)
    mark = f" [{footnote}]" if footnote is not None else ""
    return [
        row.edge_run_id[:8],
        row.edge_device_id,
        row.model,
        f"{base.kind}: {label}" + (f" ({base.run_id[:8]})" if base.run_id else "") + mark,
        row.match,
        row.scenario,
        _num(row.ratios.latency_p50, suffix="x"),
        _num(row.ratios.throughput, suffix="x"),
        _num(row.ratios.joules_per_inference, suffix="x"),
        _num(row.cost_per_million_usd.edge, "${:.3g}"),
        _num(row.cost_per_million_usd.baseline, "${:.3g}"),
        _num(row.cost_per_million_usd.baseline_cloud, "${:.3g}"),
        break_even_text(row, with_reason=full_labels),
        _num(row.fidelity.top1_agreement, "{:.0%}"),
    ]


def _source_numbers(rows: Sequence[ComparisonRow]) -> dict[str, int]:
    """Footnote number of every distinct cited source, in order of first appearance."""
    numbers: dict[str, int] = {}
    for row in rows:
        if row.baseline.source and row.baseline.source not in numbers:
            numbers[row.baseline.source] = len(numbers) + 1
    return numbers


def format_table(rows: Sequence[ComparisonRow]) -> str:
    """A plain-text table for the terminal, a legend, and the numbered sources of cited rows."""
    numbers = _source_numbers(rows)
    cells = [list(TABLE_HEADERS)] + [
        table_cells(r, footnote=numbers.get(r.baseline.source or "")) for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", LEGEND]
    if numbers:
        labels = {r.baseline.source: r.baseline.label for r in rows if r.baseline.source}
        lines += ["", "Sources of the cited rows:"]
        lines += [f"[{n}] {labels[src]}: {src}" for src, n in numbers.items()]
    shares = share_notes(rows)
    if shares:
        lines += ["", "Share of a catalogue machine charged (a run on a slice of it):"]
        lines += [f"{label}: {note}" for label, note in shares.items()]
    return "\n".join(lines)


def share_notes(rows: Sequence[ComparisonRow]) -> dict[str, str]:
    """Which share of its catalogue machine each side was charged, for the sides on a slice."""
    notes: dict[str, str] = {}
    for side in unique_sides(rows):
        if side.metrics.share_note:
            notes.setdefault(f"{side.label} ({KIND_NAME[side.kind]})", side.metrics.share_note)
    return notes


# ------------------------------------------------------------------------------------ plotting

SideKind = Literal["edge", "measured", "cited"]


@dataclass(frozen=True)
class Side:
    """One distinct run or citation drawn in the plots."""

    key: str
    label: str
    kind: SideKind
    metrics: SideMetrics


EDGE_COLOR, BASE_COLOR, CITED_COLOR, CLOUD_COLOR = "tab:green", "tab:blue", "tab:purple", "tab:orange"
MISSING_COLOR = "0.45"
KIND_COLOR: dict[SideKind, str] = {"edge": EDGE_COLOR, "measured": BASE_COLOR, "cited": CITED_COLOR}
KIND_NAME: dict[SideKind, str] = {
    "edge": "edge run", "measured": "measured baseline", "cited": "cited baseline",
}


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
        for value_ns, count in raw.occupied_ns():  # either wire version's histogram
            seen += count
            xs.append(value_ns / 1e6)
            ys.append(seen / total)
        return xs, ys
    s = run.latency_ms
    return [s.min, s.p50, s.p90, s.p95, s.p99, s.p999, s.max], [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]


def unique_sides(rows: Sequence[ComparisonRow]) -> list[Side]:
    """Every distinct run or citation, edge runs first."""
    sides: dict[str, Side] = {}
    for row in rows:
        sides.setdefault(row.edge_run_id, Side(row.edge_run_id, f"{row.edge_device_id} {row.model}",
                                               "edge", row.edge_metrics))
    for row in rows:
        ref = row.baseline
        key = ref.run_id or ref.baseline_id or ref.label
        if ref.kind == "measured":
            side = Side(key, f"{ref.label} {ref.model or ''}".strip(), "measured", row.baseline_metrics)
        else:
            side = Side(key, f"{_short(ref.label)} [{ref.network}]", "cited", row.baseline_metrics)
        sides.setdefault(key, side)
    return list(sides.values())


def _eng(value: float, unit: str) -> str:
    """``3.03 m`` + unit style engineering notation (EngFormatter without importing matplotlib)."""
    prefixes = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
                (1e-6, "µ"), (1e-9, "n"))
    for scale, prefix in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _kind_legend(ax: Axes, kinds: Sequence[SideKind], extra: Sequence[tuple[str, str]] = ()) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=KIND_COLOR[k], label=KIND_NAME[k]) for k in dict.fromkeys(kinds)]
    handles += [Patch(color=color, label=label) for label, color in extra]
    ax.legend(handles=handles, fontsize="small", loc="lower right")


LINE_STYLES = ("-", "--", "-.", ":")


def line_styles(count: int) -> list[tuple[tuple[float, float, float, float], str]]:
    """``count`` distinct (colour, line style) pairs: colours spread over a qualitative map (20
    of them, then a continuous one), and the style changes with every round of colours, so no
    two legend entries look alike however many runs there are."""
    from matplotlib import colormaps

    if count <= 10:
        colours = [colormaps["tab10"](i) for i in range(count)]
    elif count <= 20:
        colours = [colormaps["tab20"](i) for i in range(count)]
    else:
        colours = [colormaps["turbo"](i / max(count - 1, 1)) for i in range(count)]
    per_round = 10 if count <= 10 else 20 if count <= 20 else count
    return [(colours[i], LINE_STYLES[(i // per_round) % len(LINE_STYLES)] if count > 20
             else LINE_STYLES[0]) for i in range(count)]


def plot_latency_cdf(rows: Sequence[ComparisonRow], runs: Mapping[str, BenchmarkResult]) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    drawn = 0
    sides = unique_sides(rows)
    for side, (colour, style) in zip(sides, line_styles(len(sides)), strict=True):
        run = runs.get(side.key)
        if run is not None:
            xs, ys = _cdf_of_run(run)
            ax.step(xs, ys, where="post", color=colour, linestyle=style,
                    label=f"{side.label} ({KIND_NAME[side.kind]})")
            drawn += 1
            continue
        m = side.metrics
        points = [(v, q) for v, q in ((m.latency_p50_ms, 0.5), (m.latency_p90_ms, 0.9)) if v is not None]
        if points:
            what = "cited p50 and p90" if len(points) == 2 else "cited median, drawn at 0.5"
            ax.plot(*zip(*points, strict=True), "o", color=colour, label=f"{side.label} ({what})")
            drawn += 1
    if not drawn:
        _no_data(ax, "latencies")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("latency per query (ms, log scale)")
        ax.set_ylabel("fraction of queries at or below that latency")
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("Latency per query: lower is better (a curve further left is faster)")
    return fig


def _hbars(ax: Axes, items: Sequence[tuple[str, float | None, str, str]], unit: str) -> None:
    """Horizontal bars on a log axis, top to bottom; an item without a value shows its reason."""
    values = [v for _, v, _, _ in items if v is not None and v > 0]
    positions = list(range(len(items)))[::-1]
    ax.set_yticks(positions, [label for label, _, _, _ in items], fontsize="small")
    if values:
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 30, max(values) * 1000)         # room for the value labels
    else:
        ax.set_xticks([])
    for pos, (_, value, color, text) in zip(positions, items, strict=True):
        if value is not None and value > 0:
            ax.barh(pos, value, color=color)
            shown = f"{value:.3g} {unit}" if unit == "USD" else _eng(value, unit)
            ax.annotate(f"{shown}{text}", (value, pos), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize="small")
        else:
            ax.text(0.01, pos, text, transform=ax.get_yaxis_transform(), va="center",
                    fontsize="small", color=MISSING_COLOR, style="italic")
    ax.set_ylim(-0.7, len(items) - 0.3)
    ax.grid(True, axis="x", which="major", alpha=0.3)


BASIS_WORDS = {
    "tdp-assumed": "assumed from TDP",
    "per-core-share": "assumed: cores' share of TDP",
}


def plot_joules(rows: Sequence[ComparisonRow]) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    sides = unique_sides(rows)
    if not sides:
        _no_data(ax, "runs")
    else:
        items: list[tuple[str, float | None, str, str]] = []
        for side in sides:
            m = side.metrics
            if m.joules_per_inference is None:
                items.append((side.label, None, MISSING_COLOR, "no energy figure (not measured, not cited, no TDP)"))
            else:
                basis = f"  ({BASIS_WORDS.get(m.power_basis, m.power_basis)})" if m.power_basis else ""
                items.append((side.label, m.joules_per_inference, KIND_COLOR[side.kind], basis))
        _hbars(ax, items, "J")
        ax.set_xlabel("joules per inference (log scale)")
        _kind_legend(ax, [s.kind for s in sides])
    ax.set_title("Energy per inference: lower is better")
    return fig


def plot_cost(rows: Sequence[ComparisonRow]) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    sides = unique_sides(rows)
    if not sides:
        _no_data(ax, "runs")
    else:
        items: list[tuple[str, float | None, str, str]] = []
        for side in sides:
            m = side.metrics
            if m.cost_per_million_usd is not None:
                items.append((f"{side.label}, owned", m.cost_per_million_usd, KIND_COLOR[side.kind], ""))
            else:
                items.append((f"{side.label}, owned", None, MISSING_COLOR,
                              f"not costed: {m.cost_reason or 'no price'}"))
            if m.cloud_per_million_usd is not None:
                items.append((f"{side.label}, rented", m.cloud_per_million_usd, CLOUD_COLOR, ""))
        _hbars(ax, items, "USD")
        ax.set_xlabel("USD per million inferences (log scale)")
        _kind_legend(ax, [s.kind for s in sides], [("rented in the cloud", CLOUD_COLOR)])
    ax.set_title("Cost per million inferences: lower is better")
    return fig


def _roofs(sides: Sequence[Side]) -> tuple[dict[str, SideMetrics], list[str]]:
    """The catalogue roofs to draw (one per hardware and precision), and devices without one."""
    roofs: dict[str, SideMetrics] = {}
    missing: list[str] = []
    for side in sides:
        m = side.metrics
        name = f"{_short(m.hardware or m.hardware_key or side.label, 60)} {m.precision or ''}".strip()
        if m.hardware_key and m.peak_ops_per_s:
            roofs.setdefault(name, m)
        elif side.kind != "cited" and (m.hardware_key or side.label) not in missing:
            missing.append(m.hardware_key or side.label)
    return roofs, missing


ROOF_COLORS = ("tab:red", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "tab:gray")


def _draw_roof(ax: Axes, name: str, m: SideMetrics, lo: float, hi: float, color: str) -> None:
    """The catalogue's roof: peak compute (flat) and memory bandwidth x intensity (slope)."""
    peak = m.peak_ops_per_s or 0.0
    label = f"roof of {name}: peak compute {_eng(peak, 'op/s')}"
    if not m.mem_bandwidth_gbs:
        ax.plot([lo, hi], [peak, peak], "-", color=color, linewidth=2,
                label=label + ", no memory bandwidth in the catalogue")
        return
    bw = m.mem_bandwidth_gbs * 1e9
    ridge = peak / bw
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, x * bw) for x in xs], "-", color=color, linewidth=2,
            label=f"{label}, memory bandwidth {m.mem_bandwidth_gbs:g} GB/s (catalogue)")
    ax.plot([lo, hi], [peak, peak], "--", color=color, linewidth=0.8)
    ax.plot(xs, [x * bw for x in xs], ":", color=color, linewidth=0.8)
    if lo < ridge < hi:
        ax.annotate(f"ridge: {ridge:.3g} ops/byte", (ridge, peak), xytext=(6, -12),
                    textcoords="offset points", fontsize="x-small", color=color)


def plot_roofline(rows: Sequence[ComparisonRow]) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    title = "Roofline: achieved ops/s, higher is better; the solid line is the device's ceiling"
    sides = unique_sides(rows)
    points = [s for s in sides if s.metrics.arithmetic_intensity and s.metrics.ops_per_s]
    if not points:
        _no_data(ax, "runs with MACs and a model file")
        ax.set_title(title)
        return fig
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    intensities = [s.metrics.arithmetic_intensity or 0.0 for s in points]
    lo, hi = min(intensities) / 30, max(intensities) * 30
    roofs, missing = _roofs(sides)
    for i, (name, m) in enumerate(roofs.items()):
        _draw_roof(ax, name, m, lo, hi, ROOF_COLORS[i % len(ROOF_COLORS)])
    for side in points:
        m = side.metrics
        x, y = m.arithmetic_intensity or 0.0, m.ops_per_s or 0.0
        use = f", {m.utilisation:.2%} of peak" if m.utilisation is not None else ""
        ax.plot([x], [y], "o", color=KIND_COLOR[side.kind], markersize=8, markeredgecolor="black",
                label=f"{side.label} ({KIND_NAME[side.kind]}): {_eng(y, 'op/s')}{use}")
        ax.annotate(side.label.split(" ", 1)[0], (x, y), xytext=(7, -3), textcoords="offset points",
                    fontsize="x-small")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    peaks = [m.peak_ops_per_s or 0.0 for m in roofs.values()]
    achieved = [s.metrics.ops_per_s or 0.0 for s in points]
    ax.set_ylim(min(achieved) / 10, max([*achieved, *peaks]) * 5)
    ax.yaxis.set_major_formatter(EngFormatter(unit="op/s"))
    ax.set_xlabel("arithmetic intensity: ops per byte of model weights (2 x MACs x batch / model file size; log scale)")
    ax.set_ylabel("achieved ops per second (1 MAC = 2 ops; log scale)")
    ax.grid(True, which="both", alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    texts = []
    if missing:
        texts.append("no roof in the catalogue for: " + ", ".join(missing))
    if any(s.kind == "cited" for s in sides):
        texts.append("cited rows are not drawn: a citation has no model file, so no intensity")
    handles += [Line2D([], [], color="none", linestyle="none", label=t) for t in texts]
    fig.legend(handles=handles, fontsize="x-small", loc="outside lower center", ncols=1)
    ax.set_title(title)
    return fig


@dataclass(frozen=True)
class Plot:
    """One chart of the report: heading, drawing function and how to read it."""

    title: str
    draw: Callable[..., Figure]
    caption: str


PLOTS: tuple[Plot, ...] = (
    Plot("Latency CDF", plot_latency_cdf,
         "Each line is one run: for a latency on the x axis, the share of its queries that finished "
         "at least that fast. Lower latency is better, so a line further left is faster; a steep line "
         "is steady. Cited results publish no distribution: their median (and p90 when published) "
         "are drawn as points."),
    Plot("Joules per inference", plot_joules,
         "Energy one inference costs on each device, on a log scale: lower is better. The label after "
         "a bar says where the figure comes from (measured, estimated, cited or assumed from the "
         "catalogue's TDP, which overstates it); grey lines have no energy figure at all."),
    Plot("Cost per million inferences", plot_cost,
         "What a million inferences cost when you own the device (price spread over its lifetime "
         "plus electricity) or rent the baseline in the cloud, on a log scale: lower is better. "
         "Grey lines are not costed, with the reason (usually no price in the catalogue)."),
    Plot("Roofline", plot_roofline,
         "Achieved operations per second (1 MAC = 2 ops) against arithmetic intensity (ops per byte "
         "of model weights). Each device's roof comes from the catalogue: the flat line is its peak "
         "compute, the sloped line its memory bandwidth times intensity; a run cannot rise above "
         "the lower of the two. Higher is better; the gap to the roof is unused hardware."),
)


def describe(fig: Figure) -> str:
    """Title and axis labels of a chart, as text (the ``alt`` of its image)."""
    parts: list[str] = []
    for ax in fig.get_axes():
        parts += [t for t in (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) if t]
    return ". ".join(parts)


# ---------------------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 110em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.about td { border-top: none; background: #fafafa; color: #444; font-size: 0.95em; }
tr.about ul { margin: 0.2em 0 0.2em 1.2em; padding: 0; }
tr.about td { overflow-wrap: anywhere; }
img { display: block; margin: 1em 0; max-width: 100%; }
"""

_URL = re.compile(r"https?://[^\s;,<>\"']+[^\s;,.<>\"')]")


_GITHUB_FILE = re.compile(r"^https://github\.com/[^/]+/([^/]+)/blob/[0-9a-f]{7,40}/(.+)$")


def _linked(text: str) -> str:
    """Escape ``text`` and make its URLs links (a pinned repository file shows as repo: path)."""
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        url = match.group(0)
        short = _GITHUB_FILE.match(url)
        shown = f"{short[1]}: {short[2]}" if short else url
        out.append(f'<a href="{html.escape(url)}">{html.escape(shown)}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def shared_notes(rows: Sequence[ComparisonRow]) -> dict[str, int]:
    """Notes that more than one row carries, numbered in order: said once under the table."""
    counts: dict[str, int] = {}
    for row in rows:
        for note in dict.fromkeys(row.notes):
            counts[note] = counts.get(note, 0) + 1
    return {note: i for i, note in enumerate((n for n, c in counts.items() if c > 1), start=1)}


def _about_row(row: ComparisonRow, number: int | None, shared: Mapping[str, int]) -> str:
    """The line under a row: its own notes, the numbers of the notes it shares with other rows,
    and for a cited baseline the number of its source (each said once, under the table)."""
    items = [html.escape(n) for n in dict.fromkeys(row.notes) if n not in shared]
    refs = sorted({shared[n] for n in row.notes if n in shared})
    if refs:
        items.append("also notes " + ", ".join(f"N{r}" for r in refs) + " (under the table)")
    if row.baseline.source:
        items.append(f"source [{number}] (under the table)")
    if not items:
        return ""
    body = "".join(f"<li>{i}</li>" for i in items)
    return f'<tr class="about"><td colspan="{len(COLUMNS)}"><ul>{body}</ul></td></tr>'


def _said_once(rows: Sequence[ComparisonRow], numbers: Mapping[str, int],
               shared: Mapping[str, int]) -> list[str]:
    """The shared notes and the cited sources, each once, numbered as the rows refer to them."""
    parts = []
    if shared:
        parts.append("<h3>Notes shared by several rows</h3><ul>")
        parts += [f"<li>N{n}: {html.escape(note)}</li>" for note, n in shared.items()]
        parts.append("</ul>")
    if numbers:
        parts.append("<h3>Sources of the cited rows</h3><ul>")
        parts += [f"<li>[{n}] {_linked(src)}</li>" for src, n in numbers.items()]
        parts.append("</ul>")
    shares = share_notes(rows)
    if shares:
        parts.append("<h3>Share of a catalogue machine charged</h3><ul>")
        parts += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in shares.items()]
        parts.append("</ul>")
    return parts


def render_html(
    rows: Sequence[ComparisonRow],
    runs: Mapping[str, BenchmarkResult],
    settings: CostSettings | None = None,
) -> str:
    """One self-contained HTML page: settings, the table with each row's notes, and four plots."""
    settings = settings or CostSettings()
    esc = html.escape
    numbers = _source_numbers(rows)
    shared = shared_notes(rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>edgemeter: edge vs datacenter comparison</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>edgemeter: edge vs datacenter vs supercomputer</h1>",
        case_study_html(rows, runs),
        f"<p>{len(rows)} comparison row(s), each an edge run against one baseline that ran the same "
        "network in the same scenario. Tariff "
        f"{settings.tariff_usd_per_kwh} USD/kWh, duty cycle {settings.duty_cycle}, lifetime "
        + (f"{settings.lifetime_years} years" if settings.lifetime_years
           else "each catalogue entry's") + "; generated "
        f"{esc(datetime.now(timezone.utc).isoformat(timespec='seconds'))}.</p>",
        f"<p>How to read it: {esc(LEGEND)} The line under a row holds its notes and, for a cited "
        "baseline, where the figures come from; a note several rows share and every source are said "
        "once, under the table.</p>",
        "<table><thead><tr>",
        *(f'<th title="{esc(c.long)}">{esc(c.long)}</th>' for c in COLUMNS),
        "</tr></thead><tbody>",
    ]
    for row in rows:
        number = numbers.get(row.baseline.source or "")
        cells = table_cells(row, footnote=number, full_labels=True)
        parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        parts.append(_about_row(row, number, shared))
    parts.append("</tbody></table>")
    parts += _said_once(rows, numbers, shared)
    for plot in PLOTS:
        fig = plot.draw(rows, runs) if plot.draw is plot_latency_cdf else plot.draw(rows)
        parts.append(f"<h2>{esc(plot.title)}</h2>")
        parts.append(f'<p class="caption">{esc(plot.caption)}</p>')
        parts.append(f'<img alt="{esc(describe(fig))}" src="data:image/png;base64,{_png_base64(fig)}">')
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


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
