"""Baselines: measured (stored runs of role datacenter or hpc) and cited (published results).

Cited rows are :class:`~collector.records.CitedBaseline` objects, one citation each. They come from
``edgemeter baselines import FILE`` (a JSON list of objects, or a CSV file whose header names the
fields), or from the small set shipped with edgemeter (``cited_baselines.json`` next to this
module, imported with ``edgemeter baselines import --shipped``). ``edgemeter compare`` uses the
shipped rows even when they were never imported (``--no-shipped`` turns that off); importing the
same row twice stores it once, because its id is a hash of its content.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from collector.compare.matching import BASELINE_ROLES
from collector.records import CitedBaseline
from collector.stores.base import ResultFilter, Store
from shared.errors import ConfigError
from shared.schema import BenchmarkResult, Role

logger = logging.getLogger(__name__)

SHIPPED_FILE = "cited_baselines.json"


def parse_cited_rows(rows: Iterable[Mapping[str, Any]], origin: str) -> list[CitedBaseline]:
    """Validate rows as :class:`CitedBaseline`; empty values (CSV cells) count as missing."""
    parsed: list[CitedBaseline] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise ConfigError(f"{origin}: row {number} is not an object")
        fields = {k: v for k, v in row.items() if k is not None and v not in ("", None)}
        try:
            parsed.append(CitedBaseline.model_validate(fields))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(map(str, first["loc"])) or "row"
            raise ConfigError(f"{origin}: row {number}: {where}: {first['msg']}") from err
    return parsed


def parse_cited_text(text: str, origin: str) -> list[CitedBaseline]:
    """Rows from JSON (a list of objects) or, when the text is not JSON, CSV with a header."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{origin} is not valid JSON: {err}") from err
        if not isinstance(doc, list):
            raise ConfigError(f"{origin}: a JSON list of cited baseline objects is expected")
        return parse_cited_rows(doc, origin)
    return parse_cited_rows(csv.DictReader(io.StringIO(text)), origin)


def read_cited_file(path: Path) -> list[CitedBaseline]:
    """Cited rows from a JSON or CSV file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text") from err
    return parse_cited_text(text, str(path))


def shipped_baselines() -> list[CitedBaseline]:
    """The cited set shipped with edgemeter."""
    text = resources.files("collector.compare").joinpath(SHIPPED_FILE).read_text(encoding="utf-8")
    return parse_cited_text(text, f"shipped {SHIPPED_FILE}")


def import_cited(store: Store, rows: Sequence[CitedBaseline]) -> int:
    """Store cited rows; returns how many were new (importing twice adds nothing)."""
    added = store.add_cited_baselines(rows)
    logger.info("imported %d new of %d cited baseline(s)", added, len(rows))
    return added


RUNS_PER_SERIES = 50
"""How many runs of one device a compare of that device considers: its newest 50 of each model
(sha256) and scenario (``--runs-per-series`` / ``runs_per_series`` change it; ``0`` means every
run of everything, see :func:`compare_runs`)."""


def measured_baselines(store: Store, *, representatives: bool = False,
                       shares_model: frozenset[str] | None = None) -> list[BenchmarkResult]:
    """Every stored run whose role makes it a baseline (datacenter, hpc), oldest first; with
    ``representatives``, only each hardware group's newest run of each model and scenario (see
    :func:`compare_runs`); with ``shares_model``, only runs whose sha256 or network is one of
    these."""
    runs = store.list_results(ResultFilter(roles=frozenset(r.value for r in BASELINE_ROLES),
                                           newest_per_hardware=representatives,
                                           shares_model=shares_model))
    return sorted(runs, key=lambda r: r.created_at)


def compare_runs(store: Store, *, model: str | None, device: str | None,
                 per_series: int | None) -> tuple[list[BenchmarkResult], list[BenchmarkResult]]:
    """``(edge runs, measured baselines)`` for a compare of ``model`` (None: every model).

    A compare compares representatives, not every run (``per_series`` None: every run of
    everything, edge and baseline, which is slow at scale):

    * baselines: for each hardware group (``device.hardware_key``, or the device when a run has
      none) and role, its newest run of each model (sha256) and scenario, among the runs that
      share an edge run's sha256 or network (only those can match);
    * edge runs of one ``device``: its newest ``per_series`` runs of each model and scenario;
    * edge runs of the whole fleet (no ``device``): each edge hardware group's newest run of
      each model and scenario.

    The representatives come from the store's per-series table, so a fleet's compare reads a
    few dozen documents whether it holds a thousand results or a million.
    """
    if per_series is None:
        edges = store.list_results(ResultFilter(model=model, device_id=device,
                                                role=Role.EDGE.value))
    elif device is not None:
        edges = store.list_results(ResultFilter(model=model, device_id=device,
                                                role=Role.EDGE.value, per_series=per_series))
    else:
        edges = store.list_results(ResultFilter(model=model, role=Role.EDGE.value,
                                                newest_per_hardware=True))
    if not edges:
        return edges, []
    names = frozenset({r.model.sha256 for r in edges}
                      | {r.model.network for r in edges if r.model.network})
    return edges, measured_baselines(store, representatives=per_series is not None,
                                     shares_model=names)


def cited_baselines(store: Store, *, include_shipped: bool = True) -> list[tuple[CitedBaseline, bool]]:
    """Cited rows with whether each is stored: the store's, then shipped ones not imported."""
    stored = store.list_cited_baselines()
    seen = {row.baseline_id for row in stored}
    rows = [(row, True) for row in stored]
    if include_shipped:
        rows.extend((row, False) for row in shipped_baselines() if row.baseline_id not in seen)
    return rows


class BaselineListing(BaseModel):
    """One line of ``edgemeter baselines list``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["measured", "cited"]
    run_id: str | None = None
    baseline_id: str | None = None
    device: str | None = None
    hardware: str | None = None
    hardware_key: str | None = None
    model: str | None = None
    network: str | None = None
    scenario: str
    throughput_sps: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    source: str | None = None
    stored: bool = True


def list_baselines(store: Store, *, include_shipped: bool = True) -> list[BaselineListing]:
    """Measured and cited baselines, measured first."""
    listing = [
        BaselineListing(
            kind="measured",
            run_id=str(run.run_id),
            device=run.device_id,
            hardware_key=run.device.hardware_key,
            model=run.model.name,
            network=run.model.network,
            scenario=run.spec.effective.scenario.value,
            throughput_sps=run.throughput_sps,
            latency_p50_ms=run.latency_ms.p50,
            latency_p90_ms=run.latency_ms.p90,
        )
        for run in measured_baselines(store)
    ]
    listing.extend(
        BaselineListing(
            kind="cited",
            baseline_id=row.baseline_id,
            hardware=row.hardware,
            hardware_key=row.hardware_key,
            network=row.network,
            scenario=row.scenario.value,
            throughput_sps=row.throughput_sps,
            latency_p50_ms=row.latency_p50_ms,
            latency_p90_ms=row.latency_p90_ms,
            source=row.source,
            stored=stored,
        )
        for row, stored in cited_baselines(store, include_shipped=include_shipped)
    )
    return listing
