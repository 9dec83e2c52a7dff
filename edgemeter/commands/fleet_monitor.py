"""``edgemeter fleet monitor|cancel``: start monitoring jobs on devices, and end any job.

``fleet monitor`` sends one ``JobCommand(kind="monitor")`` with the same job id to every selected
online device (the selector of ``fleet run``), prints that job id on stdout, and reports each
device's ack on stderr. The devices run the model at ``--rate-qps`` and publish a window every
``--window-s`` until ``--duration-s`` is over or the job is cancelled; the collector shows the
windows under the monitor's name (``--name``, default the model file's name without its
extension). ``fleet cancel JOB_ID`` sends a cancel to every selected online device (all by
default: only the ones running it answer ``cancelled``) and waits for those answers.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from pydantic import ValidationError

from edgemeter.commands.fleet import (
    DeviceView,
    FleetWatch,
    _able,
    _broker_flags,
    _say_whether_the_collector_has,
    _watch,
    model_ref,
    online_targets,
    run_settings_from_args,
)
from shared.errors import ConfigError
from shared.messages import JobCommand, MonitorSpec
from shared.run_settings import RunSettings
from shared.settings_flags import add_settings_flags, only
from shared.topics import TopicKind, Topics

__all__ = ["register_monitor"]

ACK_WAIT_S = 15.0
MONITOR_SETTINGS = ("backend", "threads")
"""The run settings a monitoring job uses; their flags come from :class:`RunSettings`."""
_NOT_MONITOR = only(RunSettings, MONITOR_SETTINGS)


def _acks(watch: FleetWatch, job_id: str, targets: list[DeviceView], until: set[str],
          timeout_s: float) -> dict[str, tuple[str, str | None]]:
    """Each target's latest ack state for ``job_id`` once all are in ``until`` (or timeout)."""
    deadline = time.monotonic() + timeout_s
    wanted = {v.device_id for v in targets}
    while True:
        with watch.lock:
            last: dict[str, tuple[str, str | None]] = {
                a.device_id: (str(a.state), a.reason) for a in watch.acks
                    if a.job_id == job_id and a.device_id in wanted}
        if (all(last.get(d, ("", None))[0] in until for d in wanted)
                or time.monotonic() > deadline):
            return last
        watch.changed.wait(0.5)
        watch.changed.clear()


def _monitor(args: argparse.Namespace) -> int:
    ref, path = model_ref(args.model)
    settings = run_settings_from_args(args, skip=_NOT_MONITOR)
    try:
        spec = MonitorSpec(rate_qps=args.rate_qps, window_s=args.window_s,
                           duration_s=args.duration_s, name=args.name)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from err
    _say_whether_the_collector_has(ref, path, args.models_url)
    conn, watch = _watch(args, [TopicKind.STATUS, TopicKind.ACK])
    with conn:
        targets = _able(online_targets(args, watch), ref.name, settings)
        job = JobCommand(kind="monitor", job_id=uuid.uuid4().hex[:12], model=ref,
                         settings=settings, monitor=spec)
        for view in targets:
            conn.publish(Topics.build(view.fleet, view.device_id, TopicKind.CMD),
                         job.model_dump_json().encode(), qos=1)
        print(job.job_id)
        sys.stdout.flush()
        last = _acks(watch, job.job_id, targets, {"running", "rejected", "failed", "done"},
                     args.timeout_s)
    ok = True
    for view in targets:
        state, reason = last.get(view.device_id, ("no answer", None))
        print(f"{view.device_id}: {state}" + (f" ({reason})" if reason else ""), file=sys.stderr)
        ok = ok and state in ("running", "done")
    name = spec.name or ref.name.rsplit(".", 1)[0]
    print(f"monitor {name}: windows every {spec.window_s:g} s; end it with `edgemeter fleet "
          f"cancel --mqtt {args.mqtt} {job.job_id}`", file=sys.stderr)
    return 0 if ok else 1


def _cancel(args: argparse.Namespace) -> int:
    conn, watch = _watch(args, [TopicKind.STATUS, TopicKind.ACK])
    with conn:
        targets = online_targets(args, watch)
        cancel = JobCommand(kind="cancel", job_id=args.job_id)
        for view in targets:
            conn.publish(Topics.build(view.fleet, view.device_id, TopicKind.CMD),
                         cancel.model_dump_json().encode(), qos=1)
        last = _acks(watch, args.job_id, targets, {"cancelled", "rejected", "done", "failed"},
                     args.timeout_s)
    cancelled = sorted(d for d, (state, _) in last.items() if state == "cancelled")
    if not cancelled:
        print(f"no device cancelled job {args.job_id} (is it still running? "
              "`edgemeter fleet ls` shows current jobs)", file=sys.stderr)
        return 1
    print(f"cancelled {args.job_id} on {', '.join(cancelled)}", file=sys.stderr)
    return 0


def register_monitor(inner: Any) -> None:
    """Add ``monitor`` and ``cancel`` under ``edgemeter fleet`` (called by its register)."""
    monitor = inner.add_parser(
        "monitor", help="run a model continuously on selected devices, as monitor windows",
        description="Start a monitoring job on every selected online device: the model runs at "
        "--rate-qps and each device publishes a window (queries, latency histogram, p50/p90/p99, "
        "throughput, power, temperature, throttling) every --window-s seconds, until "
        "--duration-s is over or `edgemeter fleet cancel` ends it. Prints the job id.")
    _broker_flags(monitor)
    monitor.add_argument("--devices", required=True, metavar="SELECTOR",
                         help="ids or globs, fleet=NAME, board=TEXT; comma-separated (any matches)")
    monitor.add_argument("--model", required=True, metavar="FILE_OR_SHA",
                         help="a model file (its sha256 is sent) or SHA256:NAME of one the "
                         "collector has")
    monitor.add_argument("--rate-qps", type=float, required=True, metavar="R",
                         help="queries per second to run the model at")
    monitor.add_argument("--window-s", type=float, default=10.0, metavar="S",
                         help="seconds per window (default 10)")
    monitor.add_argument("--duration-s", type=float, metavar="D",
                         help="end after this many seconds (default: until cancelled)")
    monitor.add_argument("--name", help="the monitor's name (default: the model file's stem)")
    add_settings_flags(monitor, RunSettings, skip=_NOT_MONITOR)
    monitor.add_argument("--models-url", metavar="URL",
                         help="the collector's HTTP server, to check it has the model")
    monitor.add_argument("--listen-s", type=float, default=2.0,
                         help="how long to listen for retained status before choosing (default 2)")
    monitor.add_argument("--timeout-s", type=float, default=ACK_WAIT_S,
                         help=f"wait this long for the devices' answers (default {ACK_WAIT_S:g})")
    monitor.set_defaults(func=_monitor)

    cancel = inner.add_parser(
        "cancel", help="end a job (a monitoring job, or a benchmark queued or running)",
        description="Send a cancel for JOB_ID to every selected online device and wait for the "
        "ones running it to say cancelled.")
    _broker_flags(cancel)
    cancel.add_argument("job_id", metavar="JOB_ID", help="the id `fleet monitor` or `fleet run` "
                        "printed")
    cancel.add_argument("--devices", default="*", metavar="SELECTOR",
                        help="where to send the cancel (default: every online device)")
    cancel.add_argument("--listen-s", type=float, default=2.0,
                        help="how long to listen for retained status before sending (default 2)")
    cancel.add_argument("--timeout-s", type=float, default=ACK_WAIT_S,
                        help=f"wait this long for answers (default {ACK_WAIT_S:g})")
    cancel.set_defaults(func=_cancel)
