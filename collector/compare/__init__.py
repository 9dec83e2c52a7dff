"""Edge vs datacenter vs supercomputer: match, compare, cost and report benchmark runs.

Public surface (the modules behind it are documented in ``docs/compare.md``):

* :func:`compare` / :func:`compare_pair` -> :class:`ComparisonRow` (pure functions);
* :func:`match_rule` and the matching constants;
* the cost formulas (:class:`CostSettings`, :func:`cost_per_million_usd`, ...);
* what a compare loads: :func:`compare_runs` (each hardware group's newest run per model and
  scenario; one device's newest :data:`RUNS_PER_SERIES`);
* cited baselines: :func:`shipped_baselines`, :func:`read_cited_file`, :func:`import_cited`,
  :func:`list_baselines`;
* reports: :func:`format_table`, :func:`render_html`, :func:`write_html` (matplotlib is imported
  only when a plot is drawn).
"""

from __future__ import annotations

from collector.compare.baselines import (
    RUNS_PER_SERIES,
    BaselineListing,
    cited_baselines,
    compare_runs,
    import_cited,
    list_baselines,
    measured_baselines,
    parse_cited_rows,
    parse_cited_text,
    read_cited_file,
    shipped_baselines,
)
from collector.compare.cost import (
    CostSettings,
    amortised_usd_per_s,
    break_even_inferences,
    cloud_cost_per_million_usd,
    cost_per_million_usd,
    energy_usd_per_s,
)
from collector.compare.engine import (
    BaselineRef,
    BreakEven,
    ComparisonRow,
    CostPair,
    FidelityComparison,
    Ratios,
    SideMetrics,
    compare,
    compare_pair,
    fidelity_agreement,
    machine_share,
    ratio,
    side_of_cited,
    side_of_result,
)
from collector.compare.matching import (
    MACS_TOLERANCE,
    Baseline,
    MatchRule,
    is_measured_baseline,
    macs_agree,
    match_rule,
    scenario_of,
)
from collector.compare.report import format_table, render_html, write_html

__all__ = [
    "MACS_TOLERANCE",
    "RUNS_PER_SERIES",
    "Baseline",
    "BaselineListing",
    "BaselineRef",
    "BreakEven",
    "ComparisonRow",
    "CostPair",
    "CostSettings",
    "FidelityComparison",
    "MatchRule",
    "Ratios",
    "SideMetrics",
    "amortised_usd_per_s",
    "break_even_inferences",
    "cited_baselines",
    "cloud_cost_per_million_usd",
    "compare",
    "compare_pair",
    "compare_runs",
    "cost_per_million_usd",
    "energy_usd_per_s",
    "fidelity_agreement",
    "format_table",
    "import_cited",
    "is_measured_baseline",
    "list_baselines",
    "machine_share",
    "macs_agree",
    "match_rule",
    "measured_baselines",
    "parse_cited_rows",
    "parse_cited_text",
    "ratio",
    "read_cited_file",
    "render_html",
    "scenario_of",
    "shipped_baselines",
    "side_of_cited",
    "side_of_result",
    "write_html",
]
