"""One benchmark run, phase by phase, into a validated :class:`BenchmarkResult`.

The phases are named steps that take and return plain, frozen data (LoadGen's harness is the
model: the runner owns the clock; backends never time themselves)::

    plan       settings -> Plan         format, backend, threads, streams, stop rule, device manifest
    load       Plan -> Loaded           sessions (``init_ms``, the RSS the load added)
    warm up    Loaded -> WarmedUp       first inference (``first_inference_ms``), then ``--warmup N``
                                        iterations or until the windowed median settles
    measure    WarmedUp -> Measured     the scenario's timed phase; the energy monitor's window and
                                        the system sampler open and close exactly around it
    fidelity   Loaded -> FidelityDigest outputs on a fixed input set
    assemble   all of them -> result    the summary, the verdict and the effective settings, each
                                        computed once, then the result is built once

The energy monitor's idle baseline is taken between load and warm-up. A run without power
sampling gets the null monitor (:func:`agent.power.monitor.open_energy_monitor`), so no phase
branches on it. Minimum durations, query counts and early-stopping percentiles come from the cited
rules in ``shared/mlperf_rules.toml``.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

from agent import __version__, scenarios
from agent import inputs as inputs_mod
from agent.analyze import detect_format
from agent.backends import Backend, Session, backend_for
from agent.config import BenchSettings
from agent.fidelity import measure_fidelity
from agent.manifest import collect_manifest
from agent.model_info import network_name, sha256_file
from agent.power.monitor import EnergyMonitor, NullEnergyMonitor, open_energy_monitor
from agent.progress import LiveLatencies, ProgressSink, null_sink
from agent.stats import (
    coefficient_of_variation,
    early_stop_min_queries,
    latency_bound_check,
    summarize_ms,
)
from agent.system import SystemSampler
from agent.wire import lean_energy
from shared.catalogue import HardwareEntry, load_catalogue
from shared.errors import ConfigError, EdgemeterError
from shared.mlperf_rules import Rules, load_rules
from shared.schema import (
    BenchmarkResult,
    DeviceManifest,
    EnergyReport,
    FidelityDigest,
    LatencyBoundCheck,
    LatencyHistogram,
    LatencySummary,
    ModelInfo,
    RunSpec,
    RunSpecPair,
    Scenario,
    Stability,
    StabilityWindow,
    SystemState,
    Validity,
)

logger = logging.getLogger(__name__)

UNSTABLE_CV = 0.10
MIN_POWER_COVERAGE = 0.9
# Stability is judged only when each of the STABILITY_WINDOWS windows lasts at least this long
# (a timed phase of 5 s or more): windows of a few hundred milliseconds on a shared machine measure
# scheduler noise, not the model. Shorter runs still report the windows and their CV.
MIN_STABILITY_WINDOW_NS = 1_000_000_000
STABILITY_WINDOWS = 5
# warm-up iterations of the second and later streams when --warmup is not given
EXTRA_STREAM_WARMUP = 5


# the phases' data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What will run, decided from the settings and the device before anything loads."""

    fmt: str
    backend: Backend
    threads: int
    streams: int
    samples_per_query: int
    stop: scenarios.StopRule
    manifest: DeviceManifest
    hardware: HardwareEntry | None


@dataclass(frozen=True)
class Loaded:
    """The loaded sessions. ``first`` has the requested batch (model info, runtime, fidelity)."""

    first: Session
    timed_sessions: tuple[Session, ...]
    """one per stream, each prepared for ``session_batch``"""
    session_batch: int
    calls_per_query: int
    """multi-stream without a batched session: single-sample calls per query"""
    init_ms: float
    load_rss_bytes: int

    def close(self) -> None:
        for session in {id(s): s for s in (self.first, *self.timed_sessions)}.values():
            session.close()


@dataclass(frozen=True)
class WarmedUp:
    calls: tuple[scenarios.Call, ...]
    """one timed query per stream"""
    first_inference_ms: float
    iterations: int
    settled: bool


@dataclass(frozen=True)
class Measured:
    timed: scenarios.Timed
    energy: EnergyReport | None
    system: SystemState
    power_source: str


# pure helpers ---------------------------------------------------------------------------------


def _precision_from_tensors(session: Session) -> str:
    dtypes = {t.dtype for t in session.inputs}
    return dtypes.pop() if len(dtypes) == 1 else "mixed"


def _model_info(path: Path, fmt: str, session: Session, settings: BenchSettings) -> ModelInfo:
    macs = params = coverage = None
    precision = _precision_from_tensors(session)
    try:
        from agent.analyze import analyze_model

        analysis = analyze_model(path)
        macs, params, precision = analysis.macs, analysis.params, analysis.precision
        coverage = analysis.macs_coverage
    except (EdgemeterError, ImportError) as err:
        logger.warning("MACs not counted for %s: %s", path.name, err)
    return ModelInfo(
        name=path.name,
        network=settings.network or network_name(path),
        sha256=sha256_file(path),
        format=fmt,
        size_bytes=path.stat().st_size,
        precision=precision,
        inputs=session.inputs,
        outputs=session.outputs,
        macs=macs,
        params=params,
        macs_coverage=coverage,
    )


def _windows(timed: scenarios.Timed, samples_per_query: float,
             count: int = STABILITY_WINDOWS) -> list[StabilityWindow]:
    if len(timed.starts_ns) < count * 2:
        return []
    span = max(int(timed.starts_ns[-1]) + 1, 1)
    edges = np.linspace(0, span, count + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        mask = (timed.starts_ns >= lo) & (timed.starts_ns < hi)
        queries = int(mask.sum())
        if queries == 0:
            continue
        out.append(
            StabilityWindow(
                start_s=float(lo / 1e9),
                queries=queries,
                throughput_sps=queries * samples_per_query / ((hi - lo) / 1e9),
                p50_ms=float(np.median(timed.latencies_ns[mask]) / 1e6),
            )
        )
    return out


def stability_reasons(stability: Stability, wall_ns: int) -> list[str]:
    """Why a run's stability makes it invalid (empty when it does not)."""
    reasons = []
    long_enough = wall_ns >= STABILITY_WINDOWS * MIN_STABILITY_WINDOW_NS
    cv = stability.throughput_cv
    if long_enough and cv is not None and cv > UNSTABLE_CV:
        reasons.append(
            f"unstable: throughput varies {cv:.0%} between windows (limit {UNSTABLE_CV:.0%})"
        )
    if not stability.warmup_settled:
        reasons.append("warm-up did not settle within its time limit")
    return reasons


def throughput_settled(starts_ns: np.ndarray) -> bool:
    """Whether queries started at an even rate over :data:`STABILITY_WINDOWS` equal windows.

    The test a profile with ``max_duration_factor`` applies to extend a run (an empty window,
    a stall, counts as unsettled); too few queries to make windows count as settled.
    """
    if len(starts_ns) < 2 * STABILITY_WINDOWS:
        return True
    counts, _ = np.histogram(starts_ns, bins=STABILITY_WINDOWS, range=(0, int(starts_ns[-1]) + 1))
    cv = coefficient_of_variation([float(c) for c in counts])
    return cv is None or cv <= UNSTABLE_CV


def stop_rule(settings: BenchSettings, rules: Rules) -> scenarios.StopRule:
    """When the timed phase stops: ``--iterations``, ``--duration-s``, else the profile's rule.

    A profile with ``max_duration_factor`` (``standard``: 3) goes on past its minimum duration
    until :func:`throughput_settled`, up to that multiple of the minimum. The server scenario's
    arrivals are a fixed schedule and are not extended.
    """
    if settings.iterations is not None:
        return scenarios.StopRule(settings.iterations, 0, settings.iterations)
    if settings.duration_s is not None:
        return scenarios.StopRule(1, int(settings.duration_s * 1e9))
    min_queries = rules.min_query_count(settings.profile, settings.scenario)
    min_ns = int(rules.min_duration_s(settings.profile, settings.scenario) * 1e9)
    factor = rules.profile_rule(settings.profile).max_duration_factor
    if factor is None or settings.scenario == Scenario.SERVER:
        return scenarios.StopRule(min_queries, min_ns)
    return scenarios.StopRule(min_queries, min_ns, settled=throughput_settled,
                              max_duration_ns=int(min_ns * factor))


def report_extension(settings: BenchSettings, stop: scenarios.StopRule,
                      timed: scenarios.Timed) -> None:
    """Say what an extended run did (once per run, at WARNING: it changes what was measured)."""
    if not timed.extended:
        return
    min_s, wall_s = stop.min_duration_ns / 1e9, timed.wall_ns / 1e9
    cap_s = (stop.max_duration_ns or stop.min_duration_ns) / 1e9
    if throughput_settled(timed.starts_ns):
        logger.warning("%s profile: throughput had not settled after %.0f s; the run went on to "
                       "%.1f s, when it had (cap %.0f s)", settings.profile, min_s, wall_s, cap_s)
    else:
        logger.warning("%s profile: throughput still unsettled at the %.0f s cap (%.1f s run); "
                       "see the validity verdict", settings.profile, cap_s, wall_s)


@contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: native runtimes (LiteRT's XNNPACK line) print there."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def requested_spec(settings: BenchSettings) -> RunSpec:
    return RunSpec(
        scenario=settings.scenario, profile=settings.profile, backend=settings.backend,
        threads=settings.threads, batch=settings.batch, streams=settings.streams,
        samples_per_query=settings.samples_per_query, iterations=settings.iterations,
        duration_s=settings.duration_s, warmup=settings.warmup, target_qps=settings.target_qps,
        latency_bound_ms=settings.latency_bound_ms,
        providers=settings.backend_settings("onnxruntime").providers,
        delegate=settings.backend_settings("litert").delegate, power=settings.power.source, power_hz=settings.power.hz,
        idle_s=settings.power.idle_s, fidelity=settings.fidelity,
        inputs=str(settings.inputs) if settings.inputs else None, seed=settings.seed,
    )


def latency_bound_reasons(settings: BenchSettings, check: LatencyBoundCheck | None) -> list[str]:
    """The server scenario's verdict: LoadGen's early-stopping test on over-bound queries."""
    if settings.scenario != Scenario.SERVER:
        return []
    if check is None:
        return ["a server run is judged against a latency bound: give --latency-bound-ms"]
    if check.passed:
        return []
    return [
        f"server: {check.over_bound} of {check.queries} queries over the latency bound of "
        f"{check.bound_ms:g} ms; LoadGen's early-stopping test for p{check.percentile * 100:g} "
        f"fails (it would need at least {check.queries_needed} queries, every further one under "
        "the bound)"
    ]


def validity_reasons(
    settings: BenchSettings,
    rules: Rules,
    summary: LatencySummary,
    wall_ns: int,
    stability: Stability,
    system: SystemState,
    energy: EnergyReport | None,
    latency_bound: LatencyBoundCheck | None = None,
) -> list[str]:
    """Every reason the measured data make a run invalid (empty: valid).

    A server run needs no minimum count for its p99 estimate: as in LoadGen, the early-stopping
    test on queries over the bound decides (:func:`latency_bound_reasons`).
    """
    reasons: list[str] = []
    scenario = settings.scenario
    estimated = () if scenario == Scenario.SERVER else rules.early_stop_percentiles(scenario)
    for pct in estimated:
        need = early_stop_min_queries(pct, rules.early_stopping.confidence)
        if summary.count < need:
            reasons.append(
                f"too few queries: {summary.count} < {need} needed for the "
                f"early-stopping p{round(pct * 100)} estimate"
            )
    profile = rules.profile_rule(settings.profile)
    if profile.mlperf:
        min_s = rules.min_duration_s(settings.profile, scenario)
        min_queries = rules.min_query_count(settings.profile, scenario)
        if wall_ns / 1e9 < min_s:
            reasons.append(f"too short: {wall_ns / 1e9:.1f} s < {min_s:.0f} s (mlperf profile)")
        if summary.count < min_queries:
            reasons.append(f"too few queries: {summary.count} < {min_queries} (mlperf profile)")
    reasons.extend(stability_reasons(stability, wall_ns))
    if system.throttled:
        now = [r for r in system.throttle_reasons if "occurred" not in r]
        if now:
            reasons.append(f"throttling seen: {', '.join(now)}")
    if energy is not None:
        reasons.extend(f"power: {r}" for r in energy.reasons if not energy.valid)
        if energy.coverage is not None and energy.coverage < MIN_POWER_COVERAGE:
            reasons.append(f"power coverage low: {energy.coverage:.0%} < {MIN_POWER_COVERAGE:.0%}")
    reasons.extend(latency_bound_reasons(settings, latency_bound))
    return reasons


# the runner -----------------------------------------------------------------------------------


def check_clock(now: datetime) -> None:
    """A board without a real-time clock that has not synced yet says 1970: refuse to measure,
    since a result needs its real date (the wire schema refuses dates before 2020)."""
    if now.year < 2020:
        raise ConfigError(
            f"this device's clock says {now:%Y-%m-%d}: set the time (NTP, timedatectl) before "
            "benchmarking; a result needs its real date"
        )


class Runner:
    """Runs one benchmark described by :class:`BenchSettings`."""

    def __init__(self, settings: BenchSettings, model: Path, rules: Rules | None = None, *,
                 quiet: bool = False, progress: ProgressSink = null_sink) -> None:
        """``quiet`` also silences what native runtimes print to stderr while models load;
        ``progress`` receives the phases and, once a second while measuring, the queries done and
        the running p50 (:mod:`agent.progress`)."""
        self.settings = settings
        self.model = model
        self.rules = rules or load_rules()
        self.quiet = quiet
        self.progress = progress

    def run(self, seq: int = 0) -> BenchmarkResult:
        plan = self.plan()
        self.progress({"phase": "load"})
        loaded = self.load(plan)
        try:
            monitor = open_energy_monitor(
                self.settings, hardware=plan.hardware, cores_used=plan.threads * plan.streams
            )
            with monitor:
                self.progress({"phase": "idle"})
                monitor.measure_idle()
                self.progress({"phase": "warmup"})
                warmed = self.warm_up(loaded)
                self.progress({"phase": "measure"})
                measured = self.measure(plan, loaded, warmed, monitor)
            self.progress({"phase": "fidelity"})
            fidelity = self.fidelity(plan, loaded)
        finally:
            loaded.close()
        return self.assemble(seq, plan, loaded, warmed, measured, fidelity)

    # phases ---------------------------------------------------------------------------------

    def plan(self) -> Plan:
        settings = self.settings
        check_clock(datetime.now(timezone.utc))
        fmt = detect_format(self.model)
        backend = backend_for(fmt, settings.backend)
        catalogue = load_catalogue(settings.catalogue)
        manifest = collect_manifest(settings.sysfs_root, catalogue, settings.hardware)
        scenario = settings.scenario
        return Plan(
            fmt=fmt,
            backend=backend,
            threads=settings.threads or os.cpu_count() or 1,
            streams=settings.streams if scenario in (Scenario.OFFLINE, Scenario.SERVER) else 1,
            samples_per_query=(
                settings.samples_per_query if scenario == Scenario.MULTI_STREAM else 1
            ),
            stop=stop_rule(settings, self.rules),
            manifest=manifest,
            hardware=catalogue.entries.get(manifest.hardware_key or ""),
        )

    def _load_one(self, plan: Plan, batch: int) -> Session:
        with _native_stderr_silenced(self.quiet):
            return plan.backend.load(self.model, batch=batch, threads=plan.threads,
                                     settings=self.settings.backend_settings(plan.backend.name))

    def load(self, plan: Plan) -> Loaded:
        """Load the sessions; multi-stream batches a query into one call where the model allows."""
        settings = self.settings
        process = psutil.Process()
        rss_before = process.memory_info().rss
        t0 = time.perf_counter_ns()
        first = self._load_one(plan, settings.batch)
        init_ms = (time.perf_counter_ns() - t0) / 1e6
        load_rss_bytes = max(process.memory_info().rss - rss_before, 0)
        timed: list[Session] = [first]
        session_batch, calls_per_query = settings.batch, plan.samples_per_query
        try:
            if plan.samples_per_query > 1:
                try:
                    timed = [self._load_one(plan, plan.samples_per_query)]
                    session_batch, calls_per_query = plan.samples_per_query, 1
                except EdgemeterError:
                    logger.info("model takes no batch of %d: a query is %d calls",
                                plan.samples_per_query, plan.samples_per_query)
            timed.extend(self._load_one(plan, session_batch) for _ in range(plan.streams - 1))
        except BaseException:
            for session in {id(s): s for s in (first, *timed)}.values():
                session.close()
            raise
        return Loaded(first=first, timed_sessions=tuple(timed), session_batch=session_batch,
                      calls_per_query=calls_per_query, init_ms=init_ms,
                      load_rss_bytes=load_rss_bytes)

    def warm_up(self, loaded: Loaded) -> WarmedUp:
        """The first inference, timed on its own, then the warm-up of every stream."""
        feed = _timing_feed(self.settings, loaded.timed_sessions[0], loaded.session_batch)
        calls = [session.bind(feed) for session in loaded.timed_sessions]
        t0 = time.perf_counter_ns()
        calls[0]()
        first_inference_ms = (time.perf_counter_ns() - t0) / 1e6
        queries = tuple(scenarios.repeat(call, loaded.calls_per_query) for call in calls)
        iterations, settled = scenarios.warm_up(queries[0], self.settings.warmup)
        extra = self.settings.warmup if self.settings.warmup is not None else EXTRA_STREAM_WARMUP
        for query in queries[1:]:
            scenarios.warm_up(query, extra)
        return WarmedUp(calls=queries, first_inference_ms=first_inference_ms,
                        iterations=iterations, settled=settled)

    def measure(self, plan: Plan, loaded: Loaded, warmed: WarmedUp,
                monitor: EnergyMonitor | NullEnergyMonitor) -> Measured:
        """The timed phase, with the power window and the system sampler exactly around it."""
        system = SystemSampler(self.settings.sysfs_root)
        system.start()
        try:
            monitor.begin()
            timed = self._timed(plan, loaded, warmed.calls)
            energy = monitor.end(timed.samples)
        finally:
            state = system.stop(model_load_rss_bytes=loaded.load_rss_bytes)
        report_extension(self.settings, plan.stop, timed)
        return Measured(timed=timed, energy=energy, system=state,
                        power_source=monitor.source_name)

    def _timed(self, plan: Plan, loaded: Loaded,
               calls: tuple[scenarios.Call, ...]) -> scenarios.Timed:
        settings = self.settings
        if settings.scenario == Scenario.OFFLINE:
            return scenarios.offline(calls, plan.stop, loaded.session_batch)
        if settings.scenario == Scenario.SERVER:
            assert settings.target_qps is not None  # BenchSettings checks it
            return scenarios.server(calls, plan.stop, settings.target_qps, settings.seed,
                                    loaded.session_batch)
        samples = (plan.samples_per_query if settings.scenario == Scenario.MULTI_STREAM
                   else loaded.session_batch)
        with LiveLatencies(self.progress) as live:
            return scenarios.single_stream(calls[0], plan.stop, samples, record=live.record)

    def fidelity(self, plan: Plan, loaded: Loaded) -> FidelityDigest | None:
        """Outputs on the fixed input set, one sample per call."""
        settings = self.settings
        if settings.fidelity <= 0:
            return None
        own = loaded.first.batch != 1
        single = self._load_one(plan, 1) if own else loaded.first
        try:
            arrays, source = _fidelity_inputs(settings, single)
            return measure_fidelity(single, arrays, settings.seed, source,
                                    full=settings.full_fidelity)
        finally:
            if own:
                single.close()

    def assemble(self, seq: int, plan: Plan, loaded: Loaded, warmed: WarmedUp,
                 measured: Measured, fidelity: FidelityDigest | None) -> BenchmarkResult:
        """Summary, verdict and effective settings from the measured data; the result, once."""
        settings = self.settings
        timed = measured.timed
        summary = summarize_ms(timed.latencies_ns, self.rules.early_stop_percentiles(
            settings.scenario), self.rules.early_stopping.confidence)
        throughput = timed.samples / (timed.wall_ns / 1e9)
        windows = _windows(timed, timed.samples / max(len(timed.latencies_ns), 1))
        stability = Stability(
            warmup_iterations=warmed.iterations,
            warmup_settled=warmed.settled,
            windows=windows,
            throughput_cv=coefficient_of_variation([w.throughput_sps for w in windows]),
            p50_cv=coefficient_of_variation([w.p50_ms for w in windows]),
        )
        bound_check = None
        if settings.scenario == Scenario.SERVER and settings.latency_bound_ms is not None:
            (percentile,) = self.rules.early_stop_percentiles(Scenario.SERVER)
            bound_check = latency_bound_check(timed.latencies_ns, settings.latency_bound_ms,
                                              percentile, self.rules.early_stopping.confidence)
        reasons = validity_reasons(settings, self.rules, summary, timed.wall_ns, stability,
                                   measured.system, measured.energy, bound_check)
        validity = Validity(
            valid=not reasons,
            reasons=reasons,
            mlperf_valid=self.rules.profile_rule(settings.profile).mlperf and not reasons,
            latency_bound=bound_check,
        )
        requested = requested_spec(settings)
        effective = RunSpec.model_validate({
            **requested.model_dump(),
            "threads": plan.threads,
            "streams": plan.streams,
            "samples_per_query": plan.samples_per_query,
            "batch": 1 if settings.scenario == Scenario.MULTI_STREAM else loaded.session_batch,
            "iterations": len(timed.latencies_ns),
            "duration_s": timed.wall_ns / 1e9,
            "min_queries": plan.stop.min_queries,
            "warmup": warmed.iterations,
            "power": measured.power_source,
            "backend": plan.backend.name,
        })
        model_info = _model_info(self.model, plan.fmt, loaded.first, settings)
        return BenchmarkResult(
            device_id=settings.device_id,
            fleet=settings.fleet,
            role=settings.role,
            seq=seq,
            agent_version=__version__,
            device=plan.manifest,
            model=model_info,
            runtime=loaded.first.runtime,
            spec=RunSpecPair(requested=requested, effective=effective),
            latency_ms=summary,
            throughput_sps=throughput,
            gmacs_per_s=(model_info.macs * throughput / 1e9) if model_info.macs else None,
            init_ms=loaded.init_ms,
            first_inference_ms=warmed.first_inference_ms,
            validity=validity,
            stability=stability,
            latencies=LatencyHistogram.of(timed.latencies_ns),  # schema v2: 1 %, see shared.latency
            energy=lean_energy(measured.energy),  # the trace thinned; every figure as measured
            system=measured.system,
            fidelity=fidelity,
        )


# inputs ---------------------------------------------------------------------------------------


def _timing_feed(settings: BenchSettings, session: Session, batch: int) -> list[np.ndarray]:
    """One batch of inputs for the timed calls: the user's, or seeded random data."""
    source = settings.inputs
    if source is not None and source.suffix == ".npz":
        return inputs_mod.take_batch(inputs_mod.load_npz(source, session.inputs), batch)
    if source is not None and source.is_dir():
        tensor = session.inputs[0]
        canonical = inputs_mod.load_images(source, tensor, limit=batch)
        arrays = [inputs_mod.canonical_to_model(canonical, tensor, settings.input_range)]
        return inputs_mod.take_batch(arrays, batch)
    return inputs_mod.random_inputs(session.inputs, batch, settings.seed, settings.input_range)


def _fidelity_inputs(settings: BenchSettings, session: Session) -> tuple[list[np.ndarray], str]:
    """The fidelity set: the user's inputs, or the seeded canonical samples."""
    source, count = settings.inputs, settings.fidelity
    if source is not None and source.suffix == ".npz":
        arrays = inputs_mod.load_npz(source, session.inputs)
        return [a[:count] for a in arrays], f"npz:{source.name}"
    if source is not None and source.is_dir():
        tensor = session.inputs[0]
        canonical = inputs_mod.load_images(source, tensor, limit=count)
        return [inputs_mod.canonical_to_model(canonical, tensor, settings.input_range)], (
            f"images:{source.name}"
        )
    arrays = [
        inputs_mod.canonical_to_model(
            inputs_mod.seeded_canonical(t, count, settings.seed + i), t, settings.input_range
        )
        for i, t in enumerate(session.inputs)
    ]
    return arrays, "seeded"
