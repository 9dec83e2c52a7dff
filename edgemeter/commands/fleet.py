"""``edgemeter fleet ls|run|monitor|cancel|gaps``: see and drive the fleet through the broker.

``fleet ls`` folds the retained ``status`` and the telemetry that arrive while it listens
(:class:`FleetWatch`). ``fleet run`` picks devices with the selector of :mod:`shared.selector`,
sends each a :class:`shared.messages.JobCommand` whose settings come from flags generated from
:class:`shared.run_settings.RunSettings`, and follows the acks, progress and receipts
(:func:`_follow`). ``fleet gaps`` reads the collector's database instead (in ``collector``).
The user-facing story is :data:`DESCRIPTION`, shown by ``--help``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.capability import refusal, split
from shared.errors import ConfigError
from shared.messages import AgentManifest, JobAck, JobCommand, ModelRef, Progress, Receipt, Status, Telemetry
from shared.presence import status_wins
from shared.redact import argv_password_warning, redact_url
from shared.run_settings import RunSettings
from shared.selector import Candidate
from shared.selector import select as selector_select
from shared.settings_flags import add_settings_flags, settings_from_args
from shared.topics import TopicKind, Topics

LISTEN_S = 3.0

DESCRIPTION = (
    "See and drive the fleet through the broker (no database needed). `fleet ls` reads the "
    "retained status of every device and the telemetry that arrives while it listens "
    "(--listen-s, default 3 s; telemetry comes every telemetry_s, 10 s by default). `fleet run` "
    "picks devices by selector (ids and globs, fleet=NAME, board=TEXT; several separated by "
    "commas, any match selects), sends each a benchmark job, prints one progress line per device "
    "as acks and progress arrive, and with --wait ends when every result is stored (the "
    "collector's receipt names its run_id) or --timeout-s passes, listing what is missing. "
    "`fleet gaps` reads the collector's database instead (--db): the seq numbers missing between "
    "each device's stored results."
)


@dataclass
class DeviceView:
    device_id: str
    fleet: str
    status: Status | None = None
    telemetry: Telemetry | None = None
    last_seen: float | None = None
    manifest: AgentManifest | None = None
    """the newest birth's manifest: a death (no manifest) keeps the board and runtime known"""

    def row(self) -> dict[str, Any]:
        manifest = (self.status.manifest if self.status else None) or self.manifest
        runtime = ", ".join(f"{k} {v}" for k, v in manifest.runtimes.items()) if manifest else None
        board = (manifest.device.board or manifest.device.cpu_model) if manifest else None
        return {
            "device_id": self.device_id, "fleet": self.fleet,
            "status": self.status.status if self.status else "unknown",
            "bd_seq": self.status.bd_seq if self.status else None,
            "last_seen": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_seen))
                          if self.last_seen else None),
            "board": board, "runtime": runtime,
            "current_job": self.telemetry.current_job if self.telemetry else None,
            "spool_depth": self.telemetry.spool_depth if self.telemetry else None,
        }


@dataclass
class FleetWatch:
    """What the broker says about the fleet, folded as messages arrive. Thread-safe."""

    devices: dict[tuple[str, str], DeviceView] = field(default_factory=dict)
    acks: list[JobAck] = field(default_factory=list)
    progress: dict[tuple[str, str], Progress] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Event = field(default_factory=threading.Event)

    def on_message(self, topic: str, payload: bytes) -> None:
        address = Topics.parse(topic)
        if address is None or _not_a_device(address.fleet):
            return
        key = (address.fleet, address.device_id)
        try:
            with self.lock:
                view = self.devices.setdefault(key, DeviceView(address.device_id, address.fleet))
                if address.kind == TopicKind.STATUS:
                    status = Status.model_validate_json(payload)
                    if status_wins(view.status, status):
                        view.status = status
                        view.manifest = status.manifest or view.manifest
                        if status.sent_at:
                            view.last_seen = status.sent_at.timestamp()
                elif address.kind == TopicKind.TELEMETRY:
                    view.telemetry = Telemetry.model_validate_json(payload)
                    view.last_seen = view.telemetry.sent_at.timestamp()
                elif address.kind == TopicKind.ACK:
                    self.acks.append(JobAck.model_validate_json(payload))
                elif address.kind == TopicKind.PROGRESS:
                    self.progress[key] = Progress.model_validate_json(payload)
                elif address.kind == TopicKind.RECEIPT:
                    self.stored.update(str(r) for r in Receipt.model_validate_json(payload).run_ids)
        except ValidationError:
            return  # someone else's malformed message is not ours to report
        self.changed.set()


def _not_a_device(fleet: str) -> bool:
    """The collector announces itself under its own reserved fleet: it is not a device."""
    from collector.health import COLLECTOR_FLEET  # a constant; pydantic is loaded already

    return fleet == COLLECTOR_FLEET


def _watch(args: argparse.Namespace, kinds: list[TopicKind], fleet: str = "+") -> tuple[Any, FleetWatch]:
    from shared.mqtt import MqttOptions, connect_with

    watch = FleetWatch()
    warning = argv_password_warning(args.mqtt, "--mqtt", "--password-file")
    if warning is not None:
        print(f"edgemeter fleet: {warning}", file=sys.stderr, flush=True)
    env_password = os.environ.get("EDGEMETER_MQTT__PASSWORD") or None
    options = MqttOptions(
        urls=[args.mqtt], client_id=f"edgemeter-fleet-{uuid.uuid4().hex[:8]}",
        username=args.username, password_file=args.password_file,
        password=env_password if args.password_file is None else None,
        ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file)
    conn = connect_with(options, on_message=watch.on_message)
    for kind in kinds:
        conn.subscribe(Topics.subscription(kind, fleet), qos=1)
    return conn, watch


def _ls(args: argparse.Namespace) -> int:
    conn, watch = _watch(args, [TopicKind.STATUS, TopicKind.TELEMETRY], args.fleet)
    with conn:
        time.sleep(args.listen_s)
    with watch.lock:
        rows = sorted((v.row() for v in watch.devices.values()),
                      key=lambda r: (r["fleet"], r["device_id"]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no devices seen on {redact_url(args.mqtt)} in {args.listen_s:g} s", file=sys.stderr)
        return 0
    columns = ["device_id", "fleet", "status", "bd_seq", "last_seen", "board", "runtime",
               "current_job", "spool_depth"]
    table = [[("-" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))
    return 0


def select(devices: list[DeviceView], selector: str) -> list[DeviceView]:
    """Devices matching the selector (:mod:`shared.selector`: ids or globs, ``fleet=NAME``,
    ``board=TEXT``, comma-separated, any match selects)."""
    return selector_select(devices, selector, key=lambda v: Candidate(
        v.device_id, v.fleet, v.row()["board"] or ""))


def model_ref(model: str) -> tuple[ModelRef, Path | None]:
    """A file (hashed here) or ``SHA256:NAME``/a bare sha256 of a model the collector has."""
    path = Path(model)
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return ModelRef(sha256=digest, name=path.name, size_bytes=path.stat().st_size), path
    sha, _, name = model.partition(":")
    try:
        return ModelRef(sha256=sha, name=name or "model.tflite"), None
    except ValidationError as err:
        raise ConfigError(f"--model {model!r}: not a file, nor SHA256[:NAME.onnx|.tflite]") from err


def _run(args: argparse.Namespace) -> int:
    ref, path = model_ref(args.model)
    job_settings = run_settings_from_args(args)
    _say_whether_the_collector_has(ref, path, args.models_url)
    kinds = [TopicKind.STATUS, TopicKind.ACK, TopicKind.PROGRESS, TopicKind.RECEIPT]
    conn, watch = _watch(args, kinds)
    with conn:
        targets = _able(online_targets(args, watch), ref.name, job_settings)
        jobs: dict[str, DeviceView] = {}
        for view in targets:
            job = JobCommand(job_id=f"{uuid.uuid4().hex[:12]}", model=ref, settings=job_settings)
            jobs[job.job_id] = view
            conn.publish(Topics.build(view.fleet, view.device_id, TopicKind.CMD),
                         job.model_dump_json().encode(), qos=1)
        print(f"sent {len(jobs)} job(s): " + ", ".join(f"{v.device_id}={j}" for j, v in jobs.items()),
              file=sys.stderr)
        return _follow(watch, jobs, wait=args.wait, timeout_s=args.timeout_s)


def online_targets(args: argparse.Namespace, watch: FleetWatch) -> list[DeviceView]:
    """The online devices ``--devices`` selects, after ``--listen-s`` of retained status; a
    one-line ConfigError when none."""
    time.sleep(args.listen_s)
    with watch.lock:
        online = [v for v in watch.devices.values() if v.status and v.status.status == "online"]
    targets = select(online, args.devices)
    if not targets:
        raise ConfigError(f"no online device matches {args.devices!r} "
                          f"({len(online)} online); see `edgemeter fleet ls`")
    return targets


def run_settings_from_args(args: argparse.Namespace, *, skip: Collection[str] = ()) -> RunSettings:
    """The job's settings from the flags given (but those in ``skip``); one-line ConfigError
    naming the flag."""
    return settings_from_args(args, RunSettings, skip=skip)


def _able(targets: list[DeviceView], model_name: str, settings: RunSettings) -> list[DeviceView]:
    """The devices whose birth says they can run the model; a line for each skipped one."""
    able, unable = split(targets, model_name, settings, lambda v: v.status.manifest if v.status else None)
    if not able:
        raise ConfigError(refusal(model_name, [(v.device_id, why) for v, why in unable]))
    for view, why in unable:
        print(f"skipped {view.device_id}: {why}", file=sys.stderr)
    return able


def _say_whether_the_collector_has(ref: ModelRef, path: Path | None, models_url: str | None) -> None:
    """Devices fetch the model from the collector by sha256: say so, and whether it has it."""
    shown = path.name if path is not None else ref.name
    if not models_url:
        print(f"model {shown}: sha256 {ref.sha256}; devices fetch it from the collector's "
              "[models] url (give --models-url to check it is there)", file=sys.stderr)
        return
    import urllib.error
    import urllib.request

    url = f"{models_url.rstrip('/')}/models/{ref.sha256}"
    try:
        with urllib.request.urlopen(url, timeout=10):
            print(f"model {shown}: sha256 {ref.sha256}, the collector has it", file=sys.stderr)
    except urllib.error.HTTPError as err:
        if err.code != 404:
            raise ConfigError(f"cannot ask {url}: HTTP {err.code}") from err
        add = f"edgemeter models add {path if path is not None else 'FILE'} --db URL"
        raise ConfigError(f"model {shown} (sha256 {ref.sha256}): the collector at {models_url} "
                          f"does not have it yet, so every job would fail; add it first: {add}"
                          ) from err
    except (OSError, urllib.error.URLError) as err:
        raise ConfigError(f"cannot reach the collector at {models_url}: {err}") from err


def _follow(watch: FleetWatch, jobs: dict[str, DeviceView], *, wait: bool, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    shown: dict[str, str] = {}
    while True:
        with watch.lock:
            last = {a.job_id: a for a in watch.acks if a.job_id in jobs}
            stored = set(watch.stored)
            progress = dict(watch.progress)
        finished = 0
        for job_id, view in jobs.items():
            ack = last.get(job_id)
            state = ack.state if ack else "sent"
            line = f"{view.device_id}: {state}"
            if ack and ack.reason:
                line += f" ({ack.reason})"
            if state == "running":
                prog = progress.get((view.fleet, view.device_id))
                if prog is not None and prog.job_id == job_id:
                    line += f", {prog.phase}"
                    if prog.iterations_done:
                        line += f" {prog.iterations_done} iterations"
                    if prog.running_p50_ms is not None:
                        line += f", p50 {prog.running_p50_ms:.3f} ms"
            if state == "done" and ack and ack.run_id:
                line += f", run {ack.run_id}" + (", stored" if str(ack.run_id) in stored else "")
            if shown.get(job_id) != line:
                print(line, file=sys.stderr)
                shown[job_id] = line
            ended = state in ("rejected", "failed", "cancelled") or (
                state == "done" and (not wait or (ack is not None and str(ack.run_id) in stored)))
            finished += ended
        if finished == len(jobs) or (not wait and all(j in last for j in jobs)):
            break
        if time.monotonic() > deadline:
            missing = [f"{v.device_id} ({shown.get(j, 'sent')})" for j, v in jobs.items()
                       if not (last.get(j) and last[j].run_id and str(last[j].run_id) in stored)]
            print(f"timed out after {timeout_s:g} s; not stored: {', '.join(missing)}", file=sys.stderr)
            return 1
        watch.changed.wait(0.5)
        watch.changed.clear()
    with watch.lock:
        last = {a.job_id: a for a in watch.acks if a.job_id in jobs}
    ok = all(last.get(j) and last[j].state == "done" for j in jobs)
    return 0 if ok else 1


def _broker_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker")
    group.add_argument("--mqtt", required=True, metavar="URL", help="broker, mqtt://host:port or mqtts://")
    group.add_argument("--username", help="broker user (the operator's, e.g. the collector's)")
    group.add_argument("--password-file", type=Path, metavar="FILE",
                       help="file holding the broker password (or EDGEMETER_MQTT__PASSWORD)")
    group.add_argument("--ca-file", type=Path, help="CA that signed the broker's certificate")
    group.add_argument("--cert-file", type=Path, help="client certificate (mutual TLS)")
    group.add_argument("--key-file", type=Path, help="client key (mutual TLS)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fleet", help="see and drive the fleet through the broker",
                            description=DESCRIPTION)
    inner = parser.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    ls = inner.add_parser("ls", help="devices, online or offline, from retained status and telemetry",
                          description="List devices: status, last seen, board, runtime, current "
                          "job and spool depth, from the broker (no database needed).")
    _broker_flags(ls)
    ls.add_argument("--fleet", default="+", help="one fleet only (default: all)")
    ls.add_argument("--listen-s", type=float, default=LISTEN_S,
                    help=f"how long to listen for status and telemetry (default {LISTEN_S:g})")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_ls)

    run = inner.add_parser("run", help="run a benchmark job on selected devices",
                           description="Send a benchmark job to every selected online device and "
                           "follow it. Exit 0 when every job is done (and, with --wait, stored). "
                           "The setting flags are those of `edgemeter bench`; one not given is "
                           "not sent, so the device's own [bench] table (else the default shown) "
                           "applies.")
    _broker_flags(run)
    run.add_argument("--devices", required=True, metavar="SELECTOR",
                     help="ids or globs, fleet=NAME, board=TEXT; comma-separated (any matches)")
    run.add_argument("--model", required=True, metavar="FILE_OR_SHA",
                     help="a model file (its sha256 is sent) or SHA256:NAME of one the collector has")
    run.add_argument("--models-url", metavar="URL",
                     help="the collector's HTTP server, to check it has the model (http://host:8080)")
    run.add_argument("--wait", action="store_true",
                     help="end when every result is stored by the collector (or --timeout-s)")
    run.add_argument("--timeout-s", type=float, default=600.0, help="give up after (default 600)")
    run.add_argument("--listen-s", type=float, default=2.0,
                     help="how long to listen for retained status before choosing (default 2)")
    # the job's settings: every field of RunSettings, as `edgemeter bench` takes it; a flag not
    # given is not sent, so the device's own [bench] defaults apply
    add_settings_flags(run, RunSettings)
    run.set_defaults(func=_run)

    gaps = inner.add_parser("gaps", help="missing seq ranges per device, from the results database",
                            description="List the ranges of seq numbers missing between each "
                            "device's stored results (results lost or still in a spool).")
    gaps.add_argument("--db", required=True, metavar="URL",
                      help="results database: sqlite:///PATH.db or postgresql://...")
    gaps.add_argument("--device", metavar="ID", help="one device only")
    gaps.add_argument("--json", action="store_true", help="print JSON")
    gaps.set_defaults(func=_gaps)

    from edgemeter.commands.fleet_monitor import register_monitor  # fleet monitor, fleet cancel

    register_monitor(inner)


def _gaps(args: argparse.Namespace) -> int:
    from collector.commands_fleet import fleet_gaps  # the database stack only when asked for

    return fleet_gaps(args)
