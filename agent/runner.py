"""One benchmark run, phase by phase, into a validated :class:`BenchmarkResult`.

The phases are named steps that take and return plain, frozen data (LoadGen's harness is the
model: the runner owns the clock; backends never time themselves)::

    plan       settings -> Plan         format, backend, threads, streams, stop rule, device manifest
    load       Plan -> Loaded           sessions (``init_ms``, the RSS the load added)
    warm up    Loaded -> WarmedUp       first inference (``first_inference_ms``), then ``--warmup N``
                                        iterations or until the windowed median settles
    measure    WarmedUp -> Measured     the scenario's timed phase; the energy monitor's window and
                                        the system sampler open and close exactly around it (and,
                                        for the ``sustained`` profile, the thermal tracker)
    fidelity   Loaded -> FidelityDigest outputs on a fixed input set, and the warnings they raise
    assemble   all of them -> result    the summary, the verdict (:mod:`agent.verdict`) and the
                                        effective settings, each computed once, then the result

A model whose file fixes a batch of N (:attr:`Plan.model_batch`, from the graph analysis made in
the plan) runs N samples a call whatever ``--batch`` says, and every per-sample figure counts so.

The energy monitor's idle baseline is taken between load and warm-up. A run without power
sampling gets the null monitor (:func:`agent.power.monitor.open_energy_monitor`), so no phase
branches on it. The ``sustained`` profile's stop rule is a :class:`agent.sustained.SustainedTracker`:
the run goes on until throughput and temperature settle (or its cap), and the result carries the
burst and sustained throughput, the first throttle and the thermal trace (``result.sustained``).
Minimum durations, query counts and early-stopping percentiles come from the cited
rules in ``shared/mlperf_rules.toml``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

from agent import __version__, scenarios
from agent import inputs as inputs_mod
from agent.analyze import ModelAnalysis, detect_format
from agent.backends import Backend, Session, backend_for
from agent.config import BenchSettings
from agent.fidelity import OneSampleSession, degenerate_outputs, measure_fidelity
from agent.manifest import collect_manifest
from agent.model_info import network_name, sha256_file
from agent.power.monitor import EnergyMonitor, NullEnergyMonitor, open_energy_monitor
from agent.progress import LiveLatencies, ProgressSink, null_sink
from agent.stats import coefficient_of_variation, summarize_ms
from agent.sustained import (
    SustainedReport,
    SustainedSettings,
    SustainedTracker,
    ThermalReading,
    read_thermal,
    thin_trace,
)
from agent.system import SystemSampler
from agent.verdict import STABILITY_WINDOWS, UNSTABLE_CV, judge, judge_stability
from agent.wire import lean_energy
from shared.catalogue import HardwareEntry, load_catalogue
from shared.errors import ConfigError, EdgemeterError
from shared.mlperf_rules import Rules, load_rules
from shared.schema import (
    BenchmarkResult,
    DeviceManifest,
    EnergyReport,
    FidelityDigest,
    LatencyHistogram,
    ModelInfo,
    RunSpec,
    RunSpecPair,
    Scenario,
    SustainedRun,
    SystemState,
    ThermalTrace,
)

logger = logging.getLogger(__name__)

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
    analysis: ModelAnalysis | None
    """MACs per sample and the batch the file fixes; None where the graph could not be read"""
    sustained: SustainedTracker | None = None
    """the sustained profile's tracker (the stop rule's ``settled`` test); None otherwise"""

    @property
    def model_batch(self) -> int:
        """Samples per call the model file fixes (1: its batch dimension is dynamic)."""
        return self.analysis.batch if self.analysis is not None else 1


@dataclass(frozen=True)
class Loaded:
    """The loaded sessions. ``first`` has the requested batch (model info, runtime, fidelity)."""

    first: Session
    timed_sessions: tuple[Session, ...]
    """one per stream, each prepared for ``session_batch``"""
    session_batch: int
    """samples per call of the timed sessions (a fixed-batch model's N whatever --batch says)"""
    calls_per_query: int
    """multi-stream without a batched session: calls per query"""
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
    sustained: SustainedReport | None = None


# pure helpers ---------------------------------------------------------------------------------


def _precision_from_tensors(session: Session) -> str:
    dtypes = {t.dtype for t in session.inputs}
    return dtypes.pop() if len(dtypes) == 1 else "mixed"


def _analysis(path: Path) -> ModelAnalysis | None:
    """The model's counts per sample and its fixed batch; None (with a warning) if unreadable."""
    try:
        from agent.analyze import analyze_model

        return analyze_model(path)
    except (EdgemeterError, ImportError) as err:
        logger.warning("MACs not counted for %s (its batch is taken as 1): %s", path.name, err)
        return None


def _model_info(path: Path, fmt: str, session: Session, settings: BenchSettings,
                analysis: ModelAnalysis | None) -> ModelInfo:
    macs = params = coverage = None
    precision = _precision_from_tensors(session)
    if analysis is not None:
        macs, params, precision = analysis.macs, analysis.params, analysis.precision
        coverage = analysis.macs_coverage
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


SUSTAINED = "sustained"
BURST_S = 10.0


def sustained_settings(settings: BenchSettings, rules: Rules) -> SustainedSettings:
    """The sustained profile's figures: its minimum duration is the burst (the first 10 s, or
    half the minimum when that is shorter) plus the span that must be steady; the cap is
    ``--duration-s`` or the minimum times ``max_duration_factor``."""
    if settings.iterations is not None:
        raise ConfigError("the sustained profile runs until the board settles: drop --iterations "
                          "(--duration-s sets its cap)")
    if settings.scenario == Scenario.SERVER:
        raise ConfigError("the sustained profile runs flat out: use the single-stream, "
                          "multi-stream or offline scenario")
    min_s = rules.min_duration_s(SUSTAINED, settings.scenario)
    factor = rules.profile_rule(SUSTAINED).max_duration_factor or 1.0
    burst_s = min(BURST_S, min_s / 2)
    cap_s = settings.duration_s if settings.duration_s is not None else min_s * factor
    if cap_s < min_s:
        raise ConfigError(f"the sustained profile needs --duration-s of at least {min_s:g} s "
                          f"(a {burst_s:g} s burst, then {min_s - burst_s:g} s steady)")
    return SustainedSettings(burst_s=burst_s, settle_s=min_s - burst_s, cap_s=cap_s)


def stop_rule(settings: BenchSettings, rules: Rules,
              sustained: SustainedTracker | None = None) -> scenarios.StopRule:
    """When the timed phase stops: ``--iterations``, ``--duration-s``, else the profile's rule.

    A profile with ``max_duration_factor`` (``standard``: 3) goes on past its minimum duration
    until :func:`throughput_settled`, up to that multiple of the minimum. The server scenario's
    arrivals are a fixed schedule and are not extended. The sustained profile (``sustained``
    given) goes on until the tracker says throughput and temperature settled, up to its cap.
    """
    if sustained is not None:
        plan = sustained.settings
        return scenarios.StopRule(rules.min_query_count(SUSTAINED, settings.scenario),
                                  int((plan.burst_s + plan.settle_s) * 1e9),
                                  settled=sustained.settled, max_duration_ns=int(plan.cap_s * 1e9),
                                  check_every_ns=int(plan.sample_s * 1e9))
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


def sustained_block(report: SustainedReport) -> SustainedRun:
    """The result's ``sustained`` block: the report with its trace thinned to a small message."""
    trace = thin_trace(report.trace)
    return SustainedRun(
        stopped=report.stopped,
        burst_s=report.burst_s, burst_sps=report.burst_sps,
        sustained_sps=report.sustained_sps,
        time_to_first_throttle_s=report.time_to_first_throttle_s,
        throttle_known=report.throttle_known, temperature_sensors=report.sensors,
        trace=ThermalTrace(t_s=[t.t_s for t in trace],
                           throughput_sps=[t.throughput_sps for t in trace],
                           temperature_c=[t.temperature_c for t in trace],
                           throttled=[t.throttled for t in trace]))


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
                       "see the stability verdict", settings.profile, cap_s, wall_s)


def planned_duration(stop: scenarios.StopRule) -> dict[str, float]:
    """How long the timed phase will last, for progress: ``min_s`` (its minimum duration) and
    ``at_most_s`` (a settling profile's cap); empty for a run of a fixed number of queries."""
    if stop.min_duration_ns <= 0:
        return {}
    planned = {"min_s": stop.min_duration_ns / 1e9}
    if stop.settled is not None and stop.max_duration_ns:
        planned["at_most_s"] = stop.max_duration_ns / 1e9
    return planned


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
                 quiet: bool = False, progress: ProgressSink = null_sink,
                 thermal_read: Callable[[], ThermalReading] = read_thermal) -> None:
        """``quiet`` also silences what native runtimes print to stderr while models load;
        ``progress`` receives the phases and, once a second while measuring, the queries done and
        the running p50 (:mod:`agent.progress`); ``thermal_read`` reads the board's temperature
        and throttle flag for the sustained profile."""
        self.thermal_read = thermal_read
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
                self.progress({"phase": "measure", **planned_duration(plan.stop)})
                measured = self.measure(plan, loaded, warmed, monitor)
            self.progress({"phase": "fidelity"})
            fidelity, fidelity_warnings = self.fidelity(plan, loaded)
        finally:
            loaded.close()
        return self.assemble(seq, plan, loaded, warmed, measured, fidelity, fidelity_warnings)

    # phases ---------------------------------------------------------------------------------

    def plan(self) -> Plan:
        settings = self.settings
        check_clock(datetime.now(timezone.utc))
        fmt = detect_format(self.model)
        backend = backend_for(fmt, settings.backend)
        catalogue = load_catalogue(settings.catalogue)
        manifest = collect_manifest(settings.sysfs_root, catalogue, settings.hardware)
        scenario = settings.scenario
        tracker = (SustainedTracker(sustained_settings(settings, self.rules),
                                    read=self.thermal_read)
                   if settings.profile == SUSTAINED else None)
        return Plan(
            fmt=fmt,
            backend=backend,
            threads=settings.threads or os.cpu_count() or 1,
            streams=settings.streams if scenario in (Scenario.OFFLINE, Scenario.SERVER) else 1,
            samples_per_query=(
                settings.samples_per_query if scenario == Scenario.MULTI_STREAM else 1
            ),
            stop=stop_rule(settings, self.rules, tracker),
            manifest=manifest,
            hardware=catalogue.entries.get(manifest.hardware_key or ""),
            analysis=_analysis(self.model),
            sustained=tracker,
        )

    def _load_one(self, plan: Plan, batch: int) -> Session:
        with _native_stderr_silenced(self.quiet):
            return plan.backend.load(self.model, batch=batch, threads=plan.threads,
                                     settings=self.settings.backend_settings(plan.backend.name))

    def load(self, plan: Plan) -> Loaded:
        """Load the sessions; multi-stream batches a query into one call where the model allows.

        A model whose file fixes a batch of N takes N samples a call whatever ``--batch`` says
        (it may say 1 or N); everything per sample counts N for each call.
        """
        settings = self.settings
        fixed = plan.model_batch
        if fixed > 1 and settings.batch not in (1, fixed):
            raise ConfigError(f"{self.model.name} has a fixed batch of {fixed}: use --batch 1 or "
                              f"--batch {fixed} (each call runs {fixed} samples either way)")
        requested = 1 if fixed > 1 else settings.batch
        process = psutil.Process()
        rss_before = process.memory_info().rss
        t0 = time.perf_counter_ns()
        first = self._load_one(plan, requested)
        init_ms = (time.perf_counter_ns() - t0) / 1e6
        load_rss_bytes = max(process.memory_info().rss - rss_before, 0)
        timed: list[Session] = [first]
        load_batch, session_batch = requested, max(fixed, settings.batch)
        calls_per_query = plan.samples_per_query
        try:
            if fixed > 1:
                calls_per_query = -(-plan.samples_per_query // fixed)
            elif plan.samples_per_query > 1:
                try:
                    timed = [self._load_one(plan, plan.samples_per_query)]
                    load_batch = session_batch = plan.samples_per_query
                    calls_per_query = 1
                except EdgemeterError:
                    logger.info("model takes no batch of %d: a query is %d calls",
                                plan.samples_per_query, plan.samples_per_query)
            timed.extend(self._load_one(plan, load_batch) for _ in range(plan.streams - 1))
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
        tracker = plan.sustained
        report: SustainedReport | None = None
        try:
            monitor.begin()
            if tracker is not None:
                tracker.start()
            timed = self._timed(plan, loaded, warmed.calls)
            if tracker is not None:
                per_query = timed.samples // max(len(timed.starts_ns), 1)
                report = tracker.finish(timed.starts_ns, per_query, timed.wall_ns, timed.samples)
            energy = monitor.end(timed.samples)
        finally:
            if tracker is not None:
                tracker.close()
            state = system.stop(model_load_rss_bytes=loaded.load_rss_bytes)
        if report is None:
            report_extension(self.settings, plan.stop, timed)
        else:
            logger.info("sustained: %s", report.summary().replace("\n", "; "))
        return Measured(timed=timed, energy=energy, system=state,
                        power_source=monitor.source_name, sustained=report)

    def _timed(self, plan: Plan, loaded: Loaded,
               calls: tuple[scenarios.Call, ...]) -> scenarios.Timed:
        settings = self.settings
        if settings.scenario == Scenario.OFFLINE:
            return scenarios.offline(calls, plan.stop, loaded.session_batch)
        if settings.scenario == Scenario.SERVER:
            assert settings.target_qps is not None  # BenchSettings checks it
            return scenarios.server(calls, plan.stop, settings.target_qps, settings.seed,
                                    loaded.session_batch)
        samples = loaded.session_batch
        if settings.scenario == Scenario.MULTI_STREAM:
            samples = (loaded.calls_per_query * loaded.session_batch if plan.model_batch > 1
                       else plan.samples_per_query)
        with LiveLatencies(self.progress) as live:
            return scenarios.single_stream(calls[0], plan.stop, samples, record=live.record)

    def fidelity(self, plan: Plan, loaded: Loaded) -> tuple[FidelityDigest | None, list[str]]:
        """Outputs on the fixed input set, one sample per call, and the warnings they raise
        (outputs that do not depend on the input)."""
        settings = self.settings
        if settings.fidelity <= 0:
            return None, []
        own = plan.model_batch == 1 and loaded.first.batch != 1
        single: Session = self._load_one(plan, 1) if own else loaded.first
        axes = dict(plan.analysis.batch_axes) if plan.analysis is not None else {}
        if plan.model_batch > 1 or any(axes.values()):  # a fixed batch, or a time-major input
            single = OneSampleSession(single, plan.model_batch, axes)
        try:
            arrays, source = _fidelity_inputs(settings, single)
            digest = measure_fidelity(single, arrays, settings.seed, source,
                                      full=settings.full_fidelity)
            return digest, degenerate_outputs(digest, arrays)
        finally:
            if own:
                single.close()

    def assemble(self, seq: int, plan: Plan, loaded: Loaded, warmed: WarmedUp,
                 measured: Measured, fidelity: FidelityDigest | None,
                 fidelity_warnings: list[str] | None = None) -> BenchmarkResult:
        """Summary, verdict and effective settings from the measured data; the result, once."""
        settings = self.settings
        timed = measured.timed
        summary = summarize_ms(timed.latencies_ns, self.rules.reported_percentiles(
            settings.scenario), self.rules.early_stopping.confidence)
        throughput = timed.samples / (timed.wall_ns / 1e9)
        stability = judge_stability(timed, settings.scenario, warmed.iterations, warmed.settled)
        validity = judge(settings, self.rules, timed, summary, stability, measured.system,
                         measured.energy, fidelity_warnings)
        for warning in validity.warnings:
            logger.warning("%s: %s", self.model.name, warning)
        requested = requested_spec(settings)
        effective = RunSpec.model_validate({
            **requested.model_dump(),
            "threads": plan.threads,
            "streams": plan.streams,
            "samples_per_query": (loaded.calls_per_query * loaded.session_batch
                                  if settings.scenario == Scenario.MULTI_STREAM
                                  and plan.model_batch > 1 else plan.samples_per_query),
            "batch": (1 if settings.scenario == Scenario.MULTI_STREAM and plan.model_batch == 1
                      else loaded.session_batch),
            "iterations": len(timed.latencies_ns),
            "duration_s": timed.wall_ns / 1e9,
            "min_queries": plan.stop.min_queries,
            "warmup": warmed.iterations,
            "power": measured.power_source,
            "backend": plan.backend.name,
        })
        model_info = _model_info(self.model, plan.fmt, loaded.first, settings, plan.analysis)
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
            sustained=sustained_block(measured.sustained) if measured.sustained else None,
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
