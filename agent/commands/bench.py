"""``edgemeter bench MODEL``: measure one model and print, save or publish the result."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agent.commands.bench_args import add_bench_flags, settings_from_args
from agent.errors import PublishError
from agent.progress import TerminalProgress, null_sink
from agent.publish import publish_via_spool
from agent.runner import Runner
from agent.spool import Spool
from agent.verdict import stability_line, verdict_line
from shared.errors import EdgemeterError
from shared.mqtt import parse_broker_url
from shared.paths import check_output_path
from shared.redact import redact_url
from shared.schema import BenchmarkResult

logger = logging.getLogger(__name__)

EXIT_NOT_DELIVERED = 3


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}{unit}"


def render(result: BenchmarkResult) -> str:
    """A readable summary of one result."""
    lat = result.latency_ms
    eff = result.spec.effective
    m = result.model
    rows = [
        ("model", f"{m.name} ({m.format}, {m.precision}, network {m.network})"),
        ("runtime", f"{result.runtime.name} {result.runtime.version}, {eff.threads} threads, "
                    f"{', '.join(result.runtime.providers)}"),
        ("scenario", f"{eff.scenario.value}, batch {eff.batch}, streams {eff.streams}, "
                     f"{lat.count} queries in {eff.duration_s or 0:.2f} s"),
        ("MACs", f"{m.macs / 1e6:.2f} M per sample (FLOPs {2 * m.macs / 1e6:.2f} M)"
         if m.macs else "-"),
        ("init / first", f"{result.init_ms:.1f} ms / {result.first_inference_ms:.2f} ms"),
        ("latency ms", f"p50 {lat.p50:.3f}  p90 {lat.p90:.3f}  p99 {lat.p99:.3f}  "
                       f"p99.9 {lat.p999:.3f}  mean {lat.mean:.3f} ± {lat.std:.3f}"),
    ]
    if lat.p90_early_stop is not None or lat.p99_early_stop is not None:
        rows.append(("early stop", f"p90 {_fmt(lat.p90_early_stop)}  p99 {_fmt(lat.p99_early_stop)}"))
    rows.append(("throughput", f"{result.throughput_sps:.1f} samples/s"
                 + (f", {result.gmacs_per_s:.2f} GMAC/s" if result.gmacs_per_s else "")))
    e = result.energy
    if e is not None:
        label = "ESTIMATED " if e.estimated else ""
        rows.append(("energy", f"{label}{_fmt(e.joules_per_inference, ' J/inf', 4)}, "
                     f"avg {_fmt(e.avg_power_w, ' W')}, idle {_fmt(e.idle_power_w, ' W')} "
                     f"[source {e.source}, scope {e.scope.value}, coverage {_fmt(e.coverage)}]"))
    system = result.system
    if system is not None and system.cpu_util_pct is not None:
        temp = max(system.temps_c_max.values()) if system.temps_c_max else None
        rows.append(("system", f"CPU {system.cpu_util_pct:.0f}%, freq "
                     f"{_fmt(system.cpu_freq_mhz_mean, ' MHz', 4)}, max temp {_fmt(temp, ' C')}, "
                     f"peak RSS {(system.peak_rss_bytes or 0) / 2**20:.0f} MiB"))
    check = result.validity.latency_bound
    if check is not None:
        rows.append(("latency bound", f"{check.over_bound} of {check.queries} queries over "
                     f"{check.bound_ms:g} ms; early-stopping p{check.percentile * 100:g} "
                     f"{_fmt(check.early_stop_ms, ' ms')}; {'passed' if check.passed else 'failed'}"))
    qps = result.validity.server_qps
    if qps is not None:
        rows.append(("server rate", f"target {qps.target_qps:g}/s, scheduled "
                     f"{qps.scheduled_qps:.1f}/s, completed {qps.completed_qps:.1f}/s"))
    rows.extend(_sustained_rows(result))
    rows.append(("validity", _verdict(result)))
    rows.append(("stability", stability_line(result.stability)))
    rows.extend(("warning", w) for w in result.validity.warnings)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _sustained_rows(result: BenchmarkResult) -> list[tuple[str, str]]:
    """The sustained profile's figures, the board's lack of sensors said plainly."""
    block = result.sustained
    if block is None:
        return []

    def sps(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} samples/s"

    ratio = (f" ({block.sustained_sps / block.burst_sps:.2f} of burst)"
             if block.sustained_sps is not None and block.burst_sps else "")
    if not block.throttle_known:
        throttle = "this board does not say whether it throttles"
    elif block.time_to_first_throttle_s is None:
        throttle = "never throttled"
    else:
        throttle = f"first throttled after {block.time_to_first_throttle_s:.0f} s"
    temps = [t for t in block.trace.temperature_c if t is not None]
    thermal = ("no temperature sensor on this board (only the throughput had to settle)"
               if not block.temperature_sensors or not temps
               else f"{temps[0]:.1f} -> {temps[-1]:.1f} C ({', '.join(block.temperature_sensors)})")
    return [("sustained", f"{block.stopped}: burst (first {block.burst_s:g} s) "
             f"{sps(block.burst_sps)}, sustained {sps(block.sustained_sps)}{ratio}"),
            ("throttling", throttle), ("temperature", thermal)]


def _verdict(result: BenchmarkResult) -> str:
    return verdict_line(result.validity, result.spec.requested.profile)


def run(args: argparse.Namespace) -> int:
    check_output_path(args.json, "--json")
    settings = settings_from_args(args)
    if settings.publish:
        parse_broker_url(settings.publish)  # a bad URL fails before the run, not after it
    spool = _open_spool(settings.spool) if settings.publish else None
    seq = spool.next_seq() if spool is not None else 0
    progress = TerminalProgress(args.model.name) if not args.quiet else None
    try:
        result = Runner(settings, args.model, quiet=args.quiet,
                        progress=progress or null_sink).run(seq=seq)
    finally:
        if progress is not None:
            progress.close()
    if spool is not None:
        spool.put(result)  # before anything else can fail: a measurement is never lost
    if args.json:
        try:
            Path(args.json).write_text(result.model_dump_json(indent=2))
        except OSError as err:
            kept = spool or _open_spool(settings.spool)
            kept.put(result)
            raise EdgemeterError(
                f"cannot write {args.json}: {err.strerror}; the result (run {result.run_id}) is "
                f"kept in the spool {kept.path}: `edgemeter agent flush` sends it"
            ) from err
    if not args.quiet:
        print(render(result))
    if spool is None or settings.publish is None:
        return 0
    try:
        delivery = publish_via_spool(spool, settings.publish)
    except PublishError as err:
        print(f"edgemeter: not delivered: {err}", file=sys.stderr)
        return EXIT_NOT_DELIVERED
    finally:
        spool.close()
    if not args.quiet:
        where = redact_url(settings.publish)
        if str(result.run_id) in delivery.unconfirmed:
            print(f"published {delivery.sent} result(s) to {where}; the collector has not confirmed "
                  f"storing run {result.run_id} yet: it stays in the spool {spool.path} for the "
                  "agent daemon, the next --publish or `edgemeter agent flush`")
        else:
            print(f"published {delivery.sent} result(s) to {where}; stored by the collector "
                  f"({len(delivery.unconfirmed)} still waiting)")
    return 0


def _open_spool(path: Path) -> Spool:
    spool = Spool(path)
    spool.import_outbox(path.parent / "outbox")
    return spool


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmark one model",
        description="Run a model and measure latency, throughput, MACs/s, energy and system "
        "state. Exit codes: 0 ok, 2 error, 3 measured but not delivered (kept in the spool), "
        "130 interrupted.",
    )
    out = add_bench_flags(parser)["output"]
    out.add_argument("--json", metavar="PATH", help="write the validated result as JSON")
    out.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                     help="print nothing on success, and silence native runtimes' chatter")
    parser.set_defaults(func=run)
