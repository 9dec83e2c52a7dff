"""One benchmark run, phase by phase, into a validated :class:`BenchmarkResult`.

Phases: model load (``init_ms``), first inference (``first_inference_ms``), idle power baseline,
warm-up (``--warmup N`` or until the windowed median settles), the timed phase of the scenario
(power and system state sampled by background threads, windows opened and closed exactly around
it), then output fidelity on a fixed input set. The runner owns the clock; backends never time
themselves.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from agent.power import EnergyMonitor
from agent.stats import coefficient_of_variation, early_stop_min_queries, summarize_ms
from agent.system import SystemSampler
from shared import latency as latency_codec
from shared.catalogue import HardwareEntry, load_catalogue
from shared.errors import ConfigError, EdgemeterError
from shared.schema import (
    BenchmarkResult,
    EnergyReport,
    Fidelity,
    ModelInfo,
    RawLatencies,
    RunSpec,
    RunSpecPair,
    Scenario,
    Stability,
    StabilityWindow,
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


@dataclass(frozen=True)
class ProfileRule:
    min_duration_s: float
    min_queries: dict[Scenario, int]


# MLPerf Inference minimums for the mlperf profile (600 s, and its per-scenario query counts).
PROFILES: dict[str, ProfileRule] = {
    "quick": ProfileRule(1.0, dict.fromkeys(Scenario, 100)),
    "standard": ProfileRule(10.0, dict.fromkeys(Scenario, 100)),
    "mlperf": ProfileRule(
        600.0,
        {
            Scenario.SINGLE_STREAM: 1024,
            Scenario.MULTI_STREAM: 270_336,
            Scenario.SERVER: 270_336,
            Scenario.OFFLINE: 1,
        },
    ),
}

EARLY_STOP = {
    Scenario.SINGLE_STREAM: (0.90,),
    Scenario.MULTI_STREAM: (0.99,),
    Scenario.SERVER: (0.99,),
    Scenario.OFFLINE: (),
}

def _model_info(path: Path, fmt: str, session: Session, settings: BenchSettings) -> ModelInfo:
    macs = params = None
    precision = _precision_from_tensors(session)
    try:
        from agent.analyze import analyze_model

        analysis = analyze_model(path)
        macs, params, precision = analysis.macs, analysis.params, analysis.precision
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
    )


def _precision_from_tensors(session: Session) -> str:
    dtypes = {t.dtype for t in session.inputs}
    return dtypes.pop() if len(dtypes) == 1 else "mixed"


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


def stability_reasons(stab: Stability, wall_ns: int) -> list[str]:
    """Why a run's stability makes it invalid (empty when it does not)."""
    reasons = []
    long_enough = wall_ns >= STABILITY_WINDOWS * MIN_STABILITY_WINDOW_NS
    if long_enough and stab.throughput_cv is not None and stab.throughput_cv > UNSTABLE_CV:
        reasons.append(
            f"unstable: throughput varies {stab.throughput_cv:.0%} between windows "
            f"(limit {UNSTABLE_CV:.0%})"
        )
    if not stab.warmup_settled:
        reasons.append("warm-up did not settle within its time limit")
    return reasons


class Runner:
    """Runs one benchmark described by :class:`BenchSettings`."""

    def __init__(self, settings: BenchSettings, model: Path) -> None:
        self.s = settings
        self.model = model

    def _stop_rule(self) -> scenarios.StopRule:
        s = self.s
        if s.iterations is not None:
            return scenarios.StopRule(s.iterations, 0, s.iterations)
        if s.duration_s is not None:
            return scenarios.StopRule(1, int(s.duration_s * 1e9))
        prof = PROFILES[s.profile]
        return scenarios.StopRule(prof.min_queries[s.scenario], int(prof.min_duration_s * 1e9))

    def _energy_monitor(self, hardware_entry: HardwareEntry | None, cores: int) -> EnergyMonitor | None:
        if self.s.power == "none":
            return None
        return EnergyMonitor(
            self.s.power,
            sysfs_root=self.s.sysfs_root,
            hz=self.s.power_hz,
            idle_s=self.s.idle_s,
            hardware=hardware_entry,
            cores_used=cores,
            mqtt_url=self.s.power_mqtt,
            power_topic=self.s.power_topic,
            rpi5_calibration=self.s.rpi5_calibration,
        )

    def run(self, seq: int = 0) -> BenchmarkResult:
        s = self.s
        fmt = detect_format(self.model)
        backend = backend_for(fmt, s.backend)
        threads = s.threads or os.cpu_count() or 1
        scenario = s.scenario
        spq = s.samples_per_query if scenario == Scenario.MULTI_STREAM else 1
        if scenario == Scenario.SERVER and s.target_qps is None:
            raise ConfigError("the server scenario needs --target-qps (queries per second)")
        if scenario == Scenario.MULTI_STREAM and s.batch > 1:
            raise ConfigError("multi-stream builds each query from --samples-per-query; leave --batch at 1")
        catalogue = load_catalogue(s.catalogue)
        manifest = collect_manifest(s.sysfs_root, catalogue, s.hardware)
        entry = catalogue.entries.get(manifest.hardware_key or "")

        load_kw: dict[str, Any] = {"threads": threads, "providers": s.providers, "delegate": s.delegate}
        # multi-stream batches its query into one call where the model allows a batch dimension
        session_batch = s.batch
        proc = psutil.Process()
        rss_before = proc.memory_info().rss
        t0 = time.perf_counter_ns()
        session = backend.load(self.model, batch=session_batch, **load_kw)
        init_ms = (time.perf_counter_ns() - t0) / 1e6
        rss_loaded = proc.memory_info().rss - rss_before
        sessions: list[Session] = [session]
        spq_calls = spq
        if scenario == Scenario.MULTI_STREAM and s.batch == 1 and spq > 1:
            try:
                batched = backend.load(self.model, batch=spq, **load_kw)
                sessions = [batched]
                session_batch, spq_calls = spq, 1
            except EdgemeterError:
                logger.info("model takes no batch of %d: a query is %d calls", spq, spq)
        streams = s.streams if scenario in (Scenario.OFFLINE, Scenario.SERVER) else 1
        for _ in range(streams - 1):
            sessions.append(backend.load(self.model, batch=session_batch, **load_kw))
        try:
            feed = self._feed(sessions[0], session_batch)
            calls = [sess.bind(feed) for sess in sessions]
            t0 = time.perf_counter_ns()
            calls[0]()
            first_ms = (time.perf_counter_ns() - t0) / 1e6
            if scenario == Scenario.MULTI_STREAM:
                calls = [scenarios.repeat(c, spq_calls) for c in calls]

            monitor = self._energy_monitor(entry, threads * streams)
            try:
                if monitor is not None:
                    monitor.measure_idle()
                warm_n, settled = scenarios.warm_up(calls[0], s.warmup)
                for extra in calls[1:]:
                    scenarios.warm_up(extra, s.warmup if s.warmup is not None else 5)
                system = SystemSampler(s.sysfs_root)
                system.start()
                try:
                    if monitor is not None:
                        monitor.begin()
                    timed = self._timed(calls, scenario, spq, session_batch)
                    energy: EnergyReport | None = (
                        monitor.end(timed.samples) if monitor is not None else None
                    )
                finally:
                    system_state = system.stop(model_load_rss_bytes=max(rss_loaded, 0))
                power_source = monitor.source_name if monitor is not None else None
            finally:
                if monitor is not None:
                    monitor.close()
            fidelity = self._fidelity(backend, sessions[0], load_kw)
        finally:
            for sess in sessions:
                sess.close()

        summary = summarize_ms(timed.latencies_ns, EARLY_STOP[scenario])
        throughput = timed.samples / (timed.wall_ns / 1e9)
        windows = _windows(timed, timed.samples / max(len(timed.latencies_ns), 1))
        stability = Stability(
            warmup_iterations=warm_n,
            warmup_settled=settled,
            windows=windows,
            throughput_cv=coefficient_of_variation([w.throughput_sps for w in windows]),
            p50_cv=coefficient_of_variation([w.p50_ms for w in windows]),
        )
        model_info = _model_info(self.model, fmt, session, s)
        buckets, counts = latency_codec.encode(timed.latencies_ns)
        effective = self._spec(threads, streams, spq, timed)
        effective.warmup = warm_n
        effective.power = power_source or "none"
        effective.backend = backend.name
        effective.batch = session_batch if scenario != Scenario.MULTI_STREAM else 1
        result = BenchmarkResult(
            device_id=s.device_id,
            fleet=s.fleet,
            role=s.role,
            seq=seq,
            agent_version=__version__,
            device=manifest,
            model=model_info,
            runtime=session.runtime,
            spec=RunSpecPair(requested=self._requested(), effective=effective),
            latency_ms=summary,
            throughput_sps=throughput,
            gmacs_per_s=(model_info.macs * throughput / 1e9) if model_info.macs else None,
            init_ms=init_ms,
            first_inference_ms=first_ms,
            validity=Validity(valid=True),
            stability=stability,
            latencies=RawLatencies(buckets=buckets, counts=counts),
            energy=energy,
            system=system_state,
            fidelity=fidelity,
        )
        reasons = self._validity_reasons(result, timed)
        result.validity = Validity(valid=not reasons, reasons=reasons)
        return result

    def _feed(self, session: Session, batch: int) -> list[np.ndarray]:
        s = self.s
        if s.inputs is not None and s.inputs.suffix == ".npz":
            return inputs_mod.take_batch(inputs_mod.load_npz(s.inputs, session.inputs), batch)
        if s.inputs is not None and s.inputs.is_dir():
            tensor = session.inputs[0]
            canonical = inputs_mod.load_images(s.inputs, tensor, limit=batch)
            arrays = [inputs_mod.canonical_to_model(canonical, tensor, s.input_range)]
            return inputs_mod.take_batch(arrays, batch)
        return inputs_mod.random_inputs(session.inputs, batch, s.seed, s.input_range)

    def _fidelity_inputs(self, session: Session) -> tuple[list[np.ndarray], str]:
        s = self.s
        if s.inputs is not None and s.inputs.suffix == ".npz":
            arrays = inputs_mod.load_npz(s.inputs, session.inputs)
            return [a[: s.fidelity] for a in arrays], f"npz:{s.inputs.name}"
        if s.inputs is not None and s.inputs.is_dir():
            tensor = session.inputs[0]
            canonical = inputs_mod.load_images(s.inputs, tensor, limit=s.fidelity)
            return [inputs_mod.canonical_to_model(canonical, tensor, s.input_range)], (
                f"images:{s.inputs.name}"
            )
        arrays = [
            inputs_mod.canonical_to_model(
                inputs_mod.seeded_canonical(t, s.fidelity, s.seed + i), t, s.input_range
            )
            for i, t in enumerate(session.inputs)
        ]
        return arrays, "seeded"

    def _fidelity(self, backend: Backend, session: Session, load_kw: dict[str, Any]) -> Fidelity | None:
        if self.s.fidelity <= 0:
            return None
        single = session
        own = False
        if session.batch != 1:
            single = backend.load(self.model, batch=1, **load_kw)
            own = True
        try:
            arrays, source = self._fidelity_inputs(single)
            return measure_fidelity(single, arrays, self.s.seed, source)
        finally:
            if own:
                single.close()

    def _timed(self, calls: list[scenarios.Call], scenario: Scenario, spq: int,
               batch: int) -> scenarios.Timed:
        rule = self._stop_rule()
        if scenario == Scenario.OFFLINE:
            return scenarios.offline(calls, rule, batch)
        if scenario == Scenario.SERVER:
            assert self.s.target_qps is not None
            return scenarios.server(calls, rule, self.s.target_qps, self.s.seed, batch)
        return scenarios.single_stream(calls[0], rule, spq if scenario == Scenario.MULTI_STREAM
                                       else batch)

    def _requested(self) -> RunSpec:
        s = self.s
        return RunSpec(
            scenario=s.scenario, profile=s.profile, backend=s.backend, threads=s.threads,
            batch=s.batch, streams=s.streams, samples_per_query=s.samples_per_query,
            iterations=s.iterations, duration_s=s.duration_s, warmup=s.warmup,
            target_qps=s.target_qps, latency_bound_ms=s.latency_bound_ms,
            providers=s.providers, delegate=s.delegate, power=s.power, power_hz=s.power_hz,
            idle_s=s.idle_s, fidelity=s.fidelity,
            inputs=str(s.inputs) if s.inputs else None, seed=s.seed,
        )

    def _spec(self, threads: int, streams: int, spq: int, timed: scenarios.Timed) -> RunSpec:
        spec = self._requested().model_copy()
        spec.threads = threads
        spec.streams = streams
        spec.samples_per_query = spq
        spec.iterations = len(timed.latencies_ns)
        spec.duration_s = timed.wall_ns / 1e9
        spec.min_queries = self._stop_rule().min_queries
        return spec

    def _validity_reasons(self, result: BenchmarkResult, timed: scenarios.Timed) -> list[str]:
        s = self.s
        reasons: list[str] = []
        scenario = s.scenario
        for pct in EARLY_STOP[scenario]:
            need = early_stop_min_queries(pct)
            if result.latency_ms.count < need:
                reasons.append(
                    f"too few queries: {result.latency_ms.count} < {need} needed for the "
                    f"early-stopping p{round(pct * 100)} estimate"
                )
        if s.profile == "mlperf":
            prof = PROFILES["mlperf"]
            if timed.wall_ns / 1e9 < prof.min_duration_s:
                reasons.append(
                    f"too short: {timed.wall_ns / 1e9:.1f} s < {prof.min_duration_s:.0f} s "
                    "(mlperf profile)"
                )
            if result.latency_ms.count < prof.min_queries[scenario]:
                reasons.append(
                    f"too few queries: {result.latency_ms.count} < "
                    f"{prof.min_queries[scenario]} (mlperf profile)"
                )
        if result.stability is not None:
            reasons.extend(stability_reasons(result.stability, timed.wall_ns))
        sysst = result.system
        if sysst and sysst.throttled:
            now = [r for r in sysst.throttle_reasons if "occurred" not in r]
            if now:
                reasons.append(f"throttling seen: {', '.join(now)}")
        energy = result.energy
        if energy is not None:
            if not energy.valid:
                reasons.extend(f"power: {r}" for r in energy.reasons)
            if energy.coverage is not None and energy.coverage < MIN_POWER_COVERAGE:
                reasons.append(
                    f"power coverage low: {energy.coverage:.0%} < {MIN_POWER_COVERAGE:.0%}"
                )
        if scenario == Scenario.SERVER and s.latency_bound_ms is not None:
            p99 = result.latency_ms.p99
            if p99 > s.latency_bound_ms:
                reasons.append(
                    f"server p99 {p99:.2f} ms exceeds the latency bound {s.latency_bound_ms} ms"
                )
        return reasons
