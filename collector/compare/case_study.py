"""The case study that opens ``compare --html``: edge boards vs datacenter vs supercomputer node.

For one network (the one with the most comparison rows), one line per machine: every edge run
that was compared, then every baseline it met, measured or cited, on the five metrics (MACs per
inference, latency, throughput, energy per inference, cost per million inferences) with the notes
that make a reader trust the line: scenario, batch, precision, and the share of the machine the
figures are charged to (a cited per-accelerator figure is 1/N of an N-accelerator system).

Which side a baseline stands on: a measured run's role; for a cited row, the role of the shipped
row with its ``baseline_id``, else its catalogue entry's tier.

Use::

    html_fragment = case_study_html(rows, runs)   # the shipped catalogue's tiers
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collector.compare.baselines import shipped_baselines
from collector.compare.engine import ComparisonRow, SideMetrics
from collector.records import CitedBaseline
from shared.catalogue import HardwareEntry
from shared.schema import BenchmarkResult

SIDES = {"edge": "edge board", "datacenter": "datacenter", "hpc": "supercomputer node"}


@dataclass(frozen=True)
class CaseLine:
    """One machine in the case study."""

    side: str
    label: str
    origin: str
    metrics: SideMetrics
    notes: str


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _run_notes(run: BenchmarkResult | None, metrics: SideMetrics, share: str) -> str:
    if run is None:
        return share
    spec = run.spec.effective
    return (f"{spec.scenario.value}, batch {spec.batch}, {metrics.precision or 'precision not stated'}; "
            f"{share}")


def _cited_notes(row: ComparisonRow, cited: CitedBaseline | None) -> str:
    scenario = cited.scenario.value if cited else row.scenario
    batch = f"batch {cited.batch}" if cited and cited.batch else "batch as submitted"
    precision = row.baseline_metrics.precision or "precision not stated"
    if cited and cited.accelerators and cited.accelerators > 1:
        share = f"1/{cited.accelerators} of the {cited.system or 'system'}'s figure (per accelerator)"
    else:
        share = "the whole submitted system"
    where = f"; MLPerf Inference {cited.mlperf_round} {cited.division}" if cited and cited.mlperf_round else ""
    return f"{scenario}, {batch}, {precision}; {share}{where}"


def case_lines(rows: Sequence[ComparisonRow], runs: Mapping[str, BenchmarkResult],
               hardware: Mapping[str, HardwareEntry]) -> tuple[str | None, list[CaseLine], list[str]]:
    """The chosen network, its lines (edge first, then datacenter, then hpc), and the other networks."""
    networks = Counter(row.network or row.model for row in rows)
    if not networks:
        return None, [], []
    network = networks.most_common(1)[0][0]
    shipped = {c.baseline_id: c for c in shipped_baselines()}
    lines: dict[str, CaseLine] = {}
    for row in rows:
        if (row.network or row.model) != network:
            continue
        edge_run = runs.get(row.edge_run_id)
        lines.setdefault(f"edge:{row.edge_run_id}", CaseLine(
            "edge", row.edge_metrics.label, "measured", row.edge_metrics,
            _run_notes(edge_run, row.edge_metrics, _share(row.edge_metrics))))
        ref = row.baseline
        if ref.kind == "measured":
            run = runs.get(ref.run_id or "")
            side = run.role.value if run is not None else "datacenter"
            notes = _run_notes(run, row.baseline_metrics, _share(row.baseline_metrics))
        else:
            cited = shipped.get(ref.baseline_id or "")
            entry = hardware.get(ref.hardware_key) if ref.hardware_key else None
            tier = entry.tier if entry is not None else None
            side = cited.role.value if cited else (str(tier) if tier else "datacenter")
            notes = _cited_notes(row, cited)
        key = f"{ref.kind}:{ref.run_id or ref.baseline_id}"
        lines.setdefault(key, CaseLine(side, ref.label, ref.kind, row.baseline_metrics, notes))
    order = {"edge": 0, "datacenter": 1, "hpc": 2}
    ordered = sorted(lines.values(), key=lambda line: order.get(line.side, 3))
    others = sorted(str(n) for n in networks if n != network)
    return str(network), ordered, others


def _share(metrics: SideMetrics) -> str:
    scope = metrics.power_scope or "power scope not stated"
    return f"power: {metrics.power_basis or 'none'} ({scope})"


def case_study_html(rows: Sequence[ComparisonRow], runs: Mapping[str, BenchmarkResult],
                    hardware: Mapping[str, HardwareEntry] | None = None) -> str:
    """The opening section of the HTML report (empty when there is nothing to compare); tiers come
    from the shipped catalogue unless ``hardware`` is given."""
    if hardware is None:
        from shared.catalogue import load_catalogue

        hardware = load_catalogue().entries
    network, lines, others = case_lines(rows, runs, hardware)
    if network is None:
        return ""
    esc = html.escape
    head = ("side", "machine", "measured or cited", "MACs per inference", "latency p50 (ms, lower is better)",
            "throughput (inferences/s, higher is better)", "J per inference (lower is better)",
            "USD per million inferences (lower is better)", "scenario, batch, precision, share charged")
    parts = [
        f"<h2>Case study: {esc(network)} on edge boards, in the datacenter and on a supercomputer node</h2>",
        f"<p>Every line below ran the network <b>{esc(network)}</b>; a cited line is a published result "
        "(its source is under its row in the table further down), a measured one a stored run.</p>",
    ]
    if others:
        parts.append(f"<p><b>Other networks in this report:</b> {esc(', '.join(others))}. Their rows are in "
                     "the table below; they are not comparable with these lines, whose network differs.</p>")
    missing = [SIDES[s] for s in ("edge", "datacenter", "hpc") if s not in {line.side for line in lines}]
    if missing:
        parts.append(f"<p>No {esc(' or '.join(missing))} line for this network: measure one "
                     "(<code>bench --role datacenter|hpc</code>, Slurm: <code>deploy/slurm/</code>) or import "
                     "a citation.</p>")
    parts.append('<table class="case"><thead><tr class="case">' + "".join(f"<th>{esc(h)}</th>" for h in head)
                 + "</tr></thead><tbody>")
    for line in lines:
        m = line.metrics
        cells = (SIDES.get(line.side, line.side), line.label, line.origin, _fmt(m.macs), _fmt(m.latency_p50_ms),
                 _fmt(m.throughput_sps), _fmt(m.joules_per_inference), _fmt(m.cost_per_million_usd), line.notes)
        parts.append('<tr class="case">' + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def network_gaps(edges: Sequence[BenchmarkResult], baselines: Sequence[object],
                 rows: Sequence[ComparisonRow]) -> list[str]:
    """One plain line per edge network that met no baseline because every baseline ran another
    network (a ResNet-8 is not a ResNet-50): compare matches networks, never look-alikes."""
    compared = {row.edge_run_id for row in rows}
    theirs = sorted({str(n) for n in (_network_of(b) for b in baselines) if n})
    lines = []
    for network in sorted({str(e.model.network) for e in edges if str(e.run_id) not in compared
                           and e.model.network}):
        if network in theirs:
            continue  # same network, another scenario or MACs: the generic message says so
        shown = ", ".join(theirs[:8]) + (f" and {len(theirs) - 8} more" if len(theirs) > 8 else "")
        lines.append(f"{network}: no baseline ran this network, so it is compared with nothing; the "
                     f"baselines ran {shown or 'nothing'} (different networks). Bench the same network "
                     "on the other side, or give --network when a file's name hides it")
    return lines


def _network_of(baseline: object) -> str | None:
    if isinstance(baseline, CitedBaseline):
        return baseline.network
    if isinstance(baseline, BenchmarkResult):
        return baseline.model.network
    return None
