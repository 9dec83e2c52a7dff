"""``edgemeter compare`` and ``edgemeter baselines {import,list}``.

Registered by the root CLI through :func:`register`. Database drivers, matplotlib and the stores
are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from collector.compare.baselines import (
    RUNS_PER_SERIES,
    cited_baselines,
    compare_runs,
    import_cited,
    list_baselines,
    read_cited_file,
    shipped_baselines,
)
from collector.compare.case_study import network_gaps
from collector.compare.cost import CostSettings
from collector.compare.engine import compare
from collector.compare.matching import Baseline
from collector.stores.base import Store, open_store
from shared.catalogue import load_catalogue
from shared.errors import ConfigError, require_module
from shared.paths import check_output_path
from shared.schema import BenchmarkResult

logger = logging.getLogger(__name__)


@contextmanager
def opened_store(url: str, *, existing: bool = True) -> Iterator[Store]:
    """Open the store at ``url``; reading commands never create a database (``existing``)."""
    store = open_store(url, must_exist=existing)
    try:
        yield store
    finally:
        store.close()


def run_compare(args: argparse.Namespace) -> int:
    settings = CostSettings(
        tariff_usd_per_kwh=args.tariff_usd_per_kwh,
        duty_cycle=args.duty_cycle,
        lifetime_years=args.lifetime_years,
    )
    override = args.catalogue or (
        Path(os.environ["EDGEMETER_CATALOGUE"]) if os.environ.get("EDGEMETER_CATALOGUE") else None
    )
    catalogue = load_catalogue(override)
    if args.html:
        check_output_path(args.html, "--html")  # before the comparison, not after it
        require_module("matplotlib", "collector")
    with opened_store(args.db) as store:
        per_series = args.runs_per_series or None
        edges, measured = compare_runs(store, model=args.model, device=args.device,
                                       per_series=per_series)
        cited = [row for row, _ in cited_baselines(store, include_shipped=not args.no_shipped)]
    baselines: list[Baseline] = [*measured, *cited]
    if per_series is not None:
        edge_kind = f"{args.device}'s newest {per_series} run(s)" if args.device else \
            "each edge hardware group's newest run"
        print(f"compared {edge_kind} and each baseline hardware group's newest run per model "
              f"and scenario ({len(edges)} edge run(s), {len(measured)} measured baseline(s)); "
              "--runs-per-series 0 compares every run", file=sys.stderr)
    rows = compare(edges, baselines, catalogue.entries, settings)
    for line in network_gaps(edges, baselines, rows):
        print(line, file=sys.stderr)
    if args.json:
        print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
    elif rows:
        from collector.compare.report import format_table

        print(format_table(rows))
    else:
        print(f"no comparable pairs: {len(edges)} edge run(s), {len(measured)} measured and "
              f"{len(cited)} cited baseline(s) (a baseline must share the scenario and the model "
              "sha256 or network)", file=sys.stderr)
    if args.html:
        from collector.compare.report import write_html

        runs: dict[str, BenchmarkResult] = {str(r.run_id): r for r in [*edges, *measured]}
        write_html(args.html, rows, runs, settings)
        print(f"report: {args.html}", file=sys.stderr)
    return 0


def run_baselines_import(args: argparse.Namespace) -> int:
    if args.shipped == bool(args.file):
        raise ConfigError("baselines import: give FILE or --shipped (one of them)")
    rows = shipped_baselines() if args.shipped else read_cited_file(args.file)
    if not rows:
        raise ConfigError(f"{args.file}: no cited baseline rows found (JSON list or CSV with a header)")
    with opened_store(args.db, existing=False) as store:
        added = import_cited(store, rows)
    print(f"imported {added} new of {len(rows)} cited baseline(s) into {args.db}")
    return 0


def run_baselines_list(args: argparse.Namespace) -> int:
    with opened_store(args.db) as store:
        listing = list_baselines(store, include_shipped=not args.no_shipped)
    if args.json:
        print(json.dumps([item.model_dump(mode="json") for item in listing], indent=2))
        return 0
    for item in listing:
        if item.kind == "measured":
            print(f"measured  {item.run_id}  {item.device}  {item.model}  network={item.network}  "
                  f"{item.scenario}  {item.throughput_sps:.4g} sps  p50 {item.latency_p50_ms:.4g} ms")
        else:
            thr = f"{item.throughput_sps:.4g} sps" if item.throughput_sps is not None else "- sps"
            stored = "" if item.stored else "  (shipped, not imported)"
            print(f"cited     {item.baseline_id}  {item.hardware}  network={item.network}  "
                  f"{item.scenario}  {thr}{stored}\n          source: {item.source}")
    if not listing:
        print("no baselines", file=sys.stderr)
    return 0


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, metavar="URL",
                        help="results database: sqlite:///PATH.db or postgresql://...")


def register(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser(
        "compare",
        help="compare edge runs with datacenter/HPC runs and cited results",
        description="Edge runs against every baseline of the same scenario that shares their "
        "model sha256 or network: latency, throughput and energy ratios, utilisation of the "
        "catalogue's peak, cost per million inferences, cloud break-even and output fidelity. "
        "A compare takes representatives: each hardware group (device.hardware_key, else the "
        "device) contributes its newest run of each model and scenario, edge and baseline alike; "
        "with --device, that device's newest --runs-per-series runs instead.",
    )
    _db_argument(cmp)
    cmp.add_argument("--model", help="edge runs of this model name, network or sha256 only")
    cmp.add_argument("--device", help="edge runs of this device id only (its newest "
                     "--runs-per-series runs per model and scenario)")
    cmp.add_argument("--tariff-usd-per-kwh", type=float, default=0.15, metavar="USD",
                     help="electricity price (default 0.15)")
    cmp.add_argument("--duty-cycle", type=float, default=1.0, metavar="FRACTION",
                     help="fraction of its life a device runs inferences, 0-1 (default 1.0)")
    cmp.add_argument("--lifetime-years", type=float, metavar="YEARS",
                     help="amortisation period for all hardware (default: each catalogue entry's)")
    cmp.add_argument("--catalogue", type=Path, metavar="FILE",
                     help="extra catalogue TOML merged over the shipped one (or EDGEMETER_CATALOGUE)")
    cmp.add_argument("--no-shipped", action="store_true",
                     help="use only the cited baselines imported into the database")
    cmp.add_argument("--runs-per-series", type=int, default=RUNS_PER_SERIES, metavar="N",
                     help="with --device: that device's newest N runs per model and scenario "
                     f"(default {RUNS_PER_SERIES}); 0: every run of every device, edge and "
                     "baseline, not one per hardware group (slow with many results)")
    cmp.add_argument("--json", action="store_true", help="print the rows as JSON")
    cmp.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML report")
    cmp.set_defaults(func=run_compare)

    base = sub.add_parser(
        "baselines", help="import and list comparison baselines",
        description="Cited baselines are published results (MLPerf Inference and Tiny rows ship "
        "with edgemeter, each with its round and the URL of its results file) that `compare` "
        "sets edge runs against. `baselines list` shows them beside the measured datacenter runs; "
        "`baselines import FILE` adds your own (JSON list or CSV), `--shipped` stores the "
        "shipped ones in the database.")

    def _usage(_: argparse.Namespace) -> int:
        base.print_help(sys.stderr)
        return 2

    base.set_defaults(func=_usage)
    base_sub = base.add_subparsers(dest="baselines_command", metavar="ACTION")
    imp = base_sub.add_parser("import", help="import cited results (JSON list or CSV)")
    imp.add_argument("file", nargs="?", type=Path, help="JSON or CSV file of cited rows")
    imp.add_argument("--shipped", action="store_true", help="import the cited set shipped with edgemeter")
    _db_argument(imp)
    imp.set_defaults(func=run_baselines_import)
    lst = base_sub.add_parser("list", help="list measured and cited baselines")
    _db_argument(lst)
    lst.add_argument("--no-shipped", action="store_true",
                     help="hide shipped cited rows that were not imported")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=run_baselines_list)
