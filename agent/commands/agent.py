"""``edgemeter agent run|sample-config|flush``: the fleet agent daemon and its spool."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import uuid
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

RECEIPT_TIMEOUT_S = 10.0


def _run(args: argparse.Namespace) -> int:
    from agent.daemon.config import load_agent_settings
    from agent.daemon.jobs import ChildProcessJobRunner
    from agent.daemon.link import Link, LinkOptions
    from agent.daemon.monitor_socket import MonitorSocket
    from agent.daemon.service import AgentDaemon, default_manifest, job_log
    from agent.daemon.telemetry import TelemetryPower, TelemetryProbe
    from agent.model_cache import ModelCache
    from agent.monitor import default_socket
    from agent.spool import Spool

    if logging.getLogger().getEffectiveLevel() == logging.WARNING:  # the default verbosity
        job_log.setLevel(logging.INFO)  # one line per job state change
    settings = load_agent_settings(args.config)
    spool = Spool(settings.spool.path, max_bytes=int(settings.spool.max_mb * 2**20))
    spool.import_outbox(_old_outbox())
    mqtt = settings.mqtt
    password = mqtt.resolved_password()
    tls = mqtt.tls
    options = LinkOptions(
        client_id=f"edgemeter-agent-{settings.device_id}",
        keepalive_s=mqtt.keepalive_s,
        username=mqtt.username or (settings.device_id if password else None),
        password=password,
        tls=tls.files(),
    )
    urls = mqtt.broker_urls()

    def link_factory(**callbacks: object) -> Link:
        return Link(urls, options, **callbacks)  # type: ignore[arg-type]  # will, on_connect, on_message

    cache = ModelCache(settings.models.cache_dir, max_bytes=int(settings.models.max_mb * 2**20),
                       models_url=settings.models.url, token=settings.models.token())
    power = TelemetryPower(settings.bench)
    daemon = AgentDaemon(settings, spool=spool, link_factory=link_factory,
                         job_runner=ChildProcessJobRunner(), model_cache=cache,
                         manifest=default_manifest(settings),
                         telemetry=TelemetryProbe(power=power),
                         monitor_socket=MonitorSocket(default_socket()))  # InferenceMonitor
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"edgemeter agent {settings.fleet}/{settings.device_id}: broker "
          f"{', '.join(str(u) for u in urls)}, spool {spool.path} (Ctrl-C to stop)", file=sys.stderr)
    try:
        daemon.run_forever(stop)
    finally:
        power.close()
        spool.close()
    return 0


def _old_outbox() -> Path:
    """Where the earlier releases kept undelivered results (imported into the spool once)."""
    import os

    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(state) / "edgemeter" / "outbox"


def _sample(_args: argparse.Namespace) -> int:
    from agent.daemon.config import sample_config

    print(sample_config(), end="")
    return 0


def _flush(args: argparse.Namespace) -> int:
    from agent.daemon.config import load_agent_settings
    from agent.delivery import Courier, deliver_once
    from agent.errors import PublishError
    from agent.spool import Spool
    from shared.errors import BrokerError
    from shared.mqtt import connect

    settings = load_agent_settings(args.config)
    with Spool(settings.spool.path, max_bytes=int(settings.spool.max_mb * 2**20)) as spool:
        spool.import_outbox(_old_outbox())
        waiting = spool.depth()
        if not waiting:
            print(f"nothing to send: the spool {spool.path} is empty")
            return 0
        courier = Courier(spool)

        def on_receipt(_topic: str, payload: bytes) -> None:
            courier.on_receipt(payload)

        mqtt = settings.mqtt
        password = mqtt.resolved_password()
        try:
            conn = connect(mqtt.url, f"edgemeter-flush-{uuid.uuid4().hex[:8]}",
                           on_message=on_receipt, keepalive_s=mqtt.keepalive_s,
                           username=mqtt.username or (settings.device_id if password else None),
                           password=password, ca_file=mqtt.tls.ca_file,
                           cert_file=mqtt.tls.cert_file, key_file=mqtt.tls.key_file)
        except BrokerError as err:
            raise PublishError(f"{err}; {waiting} result(s) stay in {spool.path}") from err
        with conn:
            missing = deliver_once(courier, conn, receipt_timeout_s=args.timeout_s)
        print(f"sent {waiting} result(s); {waiting - len(missing)} confirmed stored by the "
              f"collector, {len(missing)} still waiting in {spool.path}")
        return 0 if not missing else 3


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "agent", help="the fleet agent daemon (presence, telemetry, remote jobs, delivery)",
        description="Run edgemeter as a long-running fleet agent: it says online/offline on the "
        "broker (retained status with a Last Will), publishes telemetry, runs benchmark jobs sent "
        "to it one at a time, and keeps every result in its spool until the collector confirms it.",
    )
    inner = parser.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    run = inner.add_parser("run", help="run the daemon until SIGTERM or Ctrl-C",
                           description="Run the fleet agent daemon.")
    run.add_argument("--config", type=Path, metavar="FILE",
                     help="agent TOML file (see `edgemeter agent sample-config`)")
    run.set_defaults(func=_run)
    sample = inner.add_parser("sample-config", help="print an annotated agent.toml that parses back",
                              description="Print an annotated agent configuration file.")
    sample.set_defaults(func=_sample)
    flush = inner.add_parser(
        "flush", help="send every unconfirmed result in the spool now and wait for receipts",
        description="Send every result waiting in the spool (left by `bench --publish` runs or "
        "a stopped daemon) and wait for the collector's receipts. Exit 3 when some stay unconfirmed.",
    )
    flush.add_argument("--config", type=Path, metavar="FILE", help="agent TOML file")
    flush.add_argument("--timeout-s", type=float, default=RECEIPT_TIMEOUT_S,
                       help=f"how long to wait for receipts (default {RECEIPT_TIMEOUT_S:.0f})")
    flush.set_defaults(func=_flush)
