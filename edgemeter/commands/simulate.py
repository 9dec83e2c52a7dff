"""``edgemeter simulate``: a fleet of virtual devices for load tests, demos and scale checks.

Each virtual device is a real MQTT client with its own client id, a retained birth and a Last Will
(:class:`shared.messages.Status`, ``bd_seq`` 1), a telemetry message at start and every
``--telemetry-s``, and schema-valid results at QoS 1 with a growing ``seq``: varied models,
boards, runtimes and numbers from a seeded generator, so two runs with one seed send the same
figures (run ids are always new). ``--messages`` is the total number of results, dealt to the
devices in turn; ``--rate`` caps results per second over the whole fleet (0: as fast as the broker
takes them). At the end every device says ``offline`` itself, unless ``--hold-s`` keeps the fleet
online a while longer (0 with ``--hold-s -1``: until Ctrl-C). With ``--window-s S`` every device also
publishes a monitor window (monitor ``sim-canary``, ``--window-queries`` latencies drawn from the
device's board) every S seconds at QoS 1, as a
monitoring job would. Each device sends its telemetry and windows at its own offset in the
period (as devices that started at different times do), also while the fleet is held.

One thread drives every device (:class:`FleetLoop`: paho's clients over one epoll selector), so a
thousand devices cost a thousand sockets, not a thousand threads; the simulator raises its own
open-file limit (soft ``RLIMIT_NOFILE``, up to the hard limit) to three descriptors per device.
Devices connect in waves of :data:`CONNECT_WAVE`; the broker must allow that many clients
(Mosquitto: ``max_connections -1`` and a ``ulimit -n`` above the device count).

It prints a JSON summary on stdout — devices, results sent and acknowledged, seconds — and with
``--sent FILE`` writes every run_id it sent, one a line, so a test can compare what was sent with
what was stored.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.errors import BrokerError
from shared.messages import AgentManifest, Status, Telemetry
from shared.mqtt import BrokerUrl, Will, make_client, parse_broker_url
from shared.payload import pack
from shared.schema import (
    BenchmarkResult,
    DeviceManifest,
    LatencyHistogram,
    LatencySummary,
    ModelInfo,
    RunSpec,
    RunSpecPair,
    RuntimeInfo,
    TensorInfo,
    Validity,
)
from shared.topics import TopicKind, Topics

BOARDS = [
    ("Raspberry Pi 5 Model B Rev 1.0", "Cortex-A76", 4, "aarch64", 1.0),
    ("Raspberry Pi 4 Model B Rev 1.4", "Cortex-A72", 4, "aarch64", 2.6),
    ("NVIDIA Jetson Orin Nano Developer Kit", "Cortex-A78AE", 6, "aarch64", 0.8),
    ("Google Coral Dev Board", "Cortex-A53", 4, "aarch64", 4.0),
    (None, "Intel(R) Xeon(R) Platinum 8380", 8, "x86_64", 0.3),
]
MODELS = [  # name, network, format, precision, MACs, p50 on the reference board (ms)
    ("vww_96_int8.tflite", "vww_96", "tflite", "int8", 7_489_664, 2.1),
    ("kws_dscnn_int8.tflite", "kws_dscnn", "tflite", "int8", 2_656_768, 0.9),
    ("ic_resnet8_int8_qdq.onnx", "ic_resnet8", "onnx", "int8", 12_501_632, 3.4),
    ("ad_autoencoder_int8.tflite", "ad_autoencoder", "tflite", "int8", 264_192, 0.12),
]
RUNTIMES = {"tflite": ("litert", "1.4.0"), "onnx": ("onnxruntime", "1.22.0")}
CONNECT_WAVE = 100
"""Devices that connect before the simulator waits for their CONNACKs."""
FDS_PER_CLIENT = 3
"""A paho client holds its socket and a socket pair for waking a threaded loop."""
FD_HEADROOM = 256


def synthetic_result(rng: random.Random, device_id: str, fleet: str, seq: int,
                     board_index: int) -> BenchmarkResult:
    """One schema-valid result with plausible, varied figures (nothing here was measured)."""
    board, cpu, cores, machine, slowdown = BOARDS[board_index % len(BOARDS)]
    name, network, fmt, precision, macs, p50_ref = rng.choice(MODELS)
    p50_ms = p50_ref * slowdown * rng.uniform(0.9, 1.15)
    count = rng.randint(100, 400)
    lat_ns = sorted(max(1.0, rng.gauss(p50_ms * 1e6, p50_ms * 3e4)) for _ in range(count))
    ms = [v / 1e6 for v in lat_ns]
    mean = sum(ms) / count
    rank = lambda q: ms[min(count - 1, max(0, int(q * count + 0.999999) - 1))]  # noqa: E731
    runtime, version = RUNTIMES[fmt]
    shape: list[int | str | None] = [1, 96, 96, 3]
    return BenchmarkResult(
        device_id=device_id, fleet=fleet, seq=seq, agent_version="simulated",
        device=DeviceManifest(hostname=device_id, board=board, cpu_model=cpu, cpu_cores=cores,
                              machine=machine),
        model=ModelInfo(name=name, network=network, format=fmt,
                        sha256=hashlib.sha256(name.encode()).hexdigest(), size_bytes=300_000,
                        precision=precision, macs=macs, params=200_000,
                        inputs=[TensorInfo(name="input", dtype=precision, shape=shape)],
                        outputs=[TensorInfo(name="output", dtype=precision, shape=[1, 2])]),
        runtime=RuntimeInfo(name=runtime, version=version, threads=cores),
        spec=RunSpecPair(requested=RunSpec(profile="quick"),
                         effective=RunSpec(profile="quick", iterations=count, threads=cores)),
        latency_ms=LatencySummary(p50=rank(0.5), p90=rank(0.9), p95=rank(0.95), p99=rank(0.99),
                                  p999=rank(0.999), mean=mean,
                                  std=(sum((v - mean) ** 2 for v in ms) / count) ** 0.5,
                                  min=ms[0], max=ms[-1], count=count),
        throughput_sps=1000.0 / p50_ms, gmacs_per_s=macs / p50_ms / 1e6,
        init_ms=rng.uniform(5, 50), first_inference_ms=rng.uniform(2, 20),
        validity=Validity(valid=True), latencies=LatencyHistogram.of(lat_ns),
        labels={"simulated": "true"},
    )


@dataclass
class VirtualDevice:
    device_id: str
    fleet: str
    board_index: int
    client: Any = None
    seq: int = 0
    connected: bool = False
    pending: list[Any] = field(default_factory=list)

    def topic(self, kind: TopicKind) -> str:
        return Topics.build(self.fleet, self.device_id, kind)

    def status(self, state: str) -> bytes:
        board, cpu, cores, machine, _ = BOARDS[self.board_index % len(BOARDS)]
        manifest = AgentManifest(
            agent_version="simulated", runtimes={"ai-edge-litert": "1.4.0"},
            device=DeviceManifest(hostname=self.device_id, board=board, cpu_model=cpu,
                                  cpu_cores=cores, machine=machine)) if state == "online" else None
        return Status(device_id=self.device_id, fleet=self.fleet, status=state,
                      bd_seq=1, manifest=manifest, sent_at=datetime.now(timezone.utc),
                      ).model_dump_json(exclude_none=True).encode()

    def telemetry(self, uptime_s: float, rng: random.Random) -> bytes:
        return Telemetry(device_id=self.device_id, fleet=self.fleet, uptime_s=uptime_s,
                         cpu_util_pct=rng.uniform(2, 60), memory_used_bytes=rng.randint(2, 6) << 28,
                         memory_total_bytes=8 << 30, temps_c={"cpu": rng.uniform(40, 70)},
                         spool_depth=0).model_dump_json(exclude_none=True).encode()

    def window(self, start: datetime, end: datetime, queries: int, rng: random.Random) -> bytes:
        """A monitor window of ``queries`` latencies around this device's board's speed."""
        from shared.monitoring import MonitorWindow, window_latency

        speed = BOARDS[self.board_index % len(BOARDS)][4]
        latencies_ns = [rng.lognormvariate(0.0, 0.25) * 2e6 * speed for _ in range(queries)]
        histogram = LatencyHistogram.of(latencies_ns) if queries else None
        seconds = (end - start).total_seconds()
        return MonitorWindow(
            device_id=self.device_id, fleet=self.fleet, name="sim-canary", start=start, end=end,
            queries=queries, latencies=histogram, latency_ms=window_latency(histogram),
            throughput_sps=queries / seconds if seconds > 0 else None,
            temperature_c=rng.uniform(40, 70), throttled=False,
        ).model_dump_json(exclude_none=True).encode()

    def publish(self, kind: TopicKind, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(self.topic(kind), payload, qos=qos, retain=retain)
        if qos > 0:
            self.pending.append(info)

    def unacknowledged(self) -> int:
        """QoS 1 messages sent but not yet acknowledged; forgets the acknowledged ones."""
        self.pending = [info for info in self.pending if not info.is_published()]
        return len(self.pending)


class FleetLoop:
    """Every device's paho client driven from the calling thread over one selector (epoll).

    paho's own ``loop_start`` costs a thread per client and waits in ``select()``, which cannot
    watch a descriptor numbered 1024 or more: a few hundred clients in one process is its limit.
    Here the clients tell the loop when they have something to write
    (``on_socket_register_write``), :meth:`poll` reads and writes whichever sockets are ready, and
    keep-alives run once a second (``loop_misc``). Not thread-safe: publish from the thread that
    polls.
    """

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.devices: list[VirtualDevice] = []
        self._next_misc = 0.0

    def _watch(self, client: Any, sock: Any, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        try:
            self.selector.modify(sock, events, client)
        except KeyError:
            self.selector.register(sock, events, client)

    def _forget(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def connect(self, url: BrokerUrl, device: VirtualDevice) -> None:
        """Open the device's connection (TCP now, CONNACK on a later :meth:`poll`)."""
        will = Status(device_id=device.device_id, fleet=device.fleet, status="offline", bd_seq=1)
        client = make_client(url, f"edgemeter-sim-{device.device_id}", "3.1.1",
                             will=Will(device.topic(TopicKind.STATUS),
                                       will.model_dump_json(exclude_none=True).encode(),
                                       qos=1, retain=True)).client
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        client.on_socket_open = lambda c, _u, sock: self._watch(c, sock, False)
        client.on_socket_register_write = lambda c, _u, sock: self._watch(c, sock, True)
        client.on_socket_unregister_write = lambda c, _u, sock: self._watch(c, sock, False)
        client.on_socket_close = lambda _c, _u, sock: self._forget(sock)

        def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
            if not reason.is_failure:
                device.connected = True
                device.publish(TopicKind.STATUS, device.status("online"), retain=True)

        def on_disconnect(*_args: Any) -> None:
            device.connected = False

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        device.client = client
        try:
            client.connect(url.host, url.port, keepalive=60)
        except OSError as err:
            raise BrokerError(f"cannot reach the broker at {url}: {err.strerror or err}") from err
        self.devices.append(device)

    def poll(self, timeout_s: float) -> None:
        """Move bytes for every ready socket, waiting at most ``timeout_s`` for one."""
        for key, mask in self.selector.select(max(timeout_s, 0.0)):
            client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read(100)
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
        now = time.monotonic()
        if now >= self._next_misc:
            self._next_misc = now + 1.0
            for device in self.devices:
                device.client.loop_misc()

    def run_until(self, done: Callable[[], bool], timeout_s: float, what: str,
                  stop: threading.Event | None = None) -> None:
        """Poll until ``done()``; :class:`BrokerError` naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if stop is not None and stop.is_set():
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"{what} within {timeout_s:.0f} s")
            self.poll(0.05)

    def close(self) -> None:
        for device in self.devices:
            with contextlib.suppress(Exception):
                device.client.disconnect()
        with contextlib.suppress(BrokerError):  # a DISCONNECT not written: the Will says offline
            self.run_until(lambda: not self.selector.get_map(), 5.0, "disconnect")
        self.selector.close()


def simulate(url: str, devices: int, messages: int, *, rate: float = 0.0, fleet: str = "sim",
             prefix: str = "sim-", seed: int = 0, telemetry_s: float = 10.0, hold_s: float = 0.0,
             sent_file: Path | None = None, stop: threading.Event | None = None,
             ready: threading.Event | None = None, timeout_s: float = 60.0,
             window_s: float = 0.0, window_queries: int = 100) -> dict[str, Any]:
    """Run the virtual fleet; returns the summary that the command prints.

    Everything runs on the calling thread (:class:`FleetLoop`). ``ready`` is set once every device
    is connected and its birth acknowledged. ``timeout_s`` bounds each wait on the broker
    (connections, acknowledgements).
    """
    rng = random.Random(seed)
    stop = stop or threading.Event()
    broker = parse_broker_url(url)
    raise_fd_limit(FDS_PER_CLIENT * devices + FD_HEADROOM)
    fleet_devices = [VirtualDevice(f"{prefix}{i:04d}", fleet, i) for i in range(devices)]
    loop = FleetLoop()
    started = time.monotonic()
    try:
        for first in range(0, devices, CONNECT_WAVE):  # a wave at a time: accept queues are short
            wave = fleet_devices[first:first + CONNECT_WAVE]
            for device in wave:
                loop.connect(broker, device)
                loop.poll(0)
            loop.run_until(lambda w=wave: all(d.connected for d in w), timeout_s,  # type: ignore[misc]
                           f"broker {broker} did not accept devices {wave[0].device_id}.."
                           f"{wave[-1].device_id}")
        loop.run_until(lambda: not any(d.unacknowledged() for d in fleet_devices), timeout_s,
                       f"broker {broker} did not acknowledge every birth")
        for device in fleet_devices:
            device.publish(TopicKind.TELEMETRY, device.telemetry(0, rng), qos=0)
        connected_s = time.monotonic() - started
        if ready is not None:
            ready.set()
        sent_ids: list[str] = []
        # telemetry and windows are spread over their periods (device i at i/N of it), as devices
        # that started at different times send them
        windows_sent = 0
        window_round = 0
        window_next = 0  # the next device to send a window
        window_t0 = time.monotonic()
        window_start = datetime.now(timezone.utc)
        window_starts: dict[str, datetime] = {}
        window_lateness_s: list[float] = []  # how late, after its due time, each window went

        telemetry_round = 0
        telemetry_next = 0
        telemetry_sent = devices  # the first round, above

        def periodic() -> None:
            """Telemetry and monitor windows that are due."""
            nonlocal windows_sent, window_round, window_next, telemetry_round, telemetry_next, \
                telemetry_sent
            while True:  # telemetry spread the same way
                due = window_t0 + telemetry_s * (telemetry_round + 1 + telemetry_next / devices)
                now = time.monotonic()
                if now < due:
                    break
                d = fleet_devices[telemetry_next]
                d.publish(TopicKind.TELEMETRY, d.telemetry(now - started, rng), qos=0)
                telemetry_sent += 1
                telemetry_next += 1
                if telemetry_next == devices:
                    telemetry_next, telemetry_round = 0, telemetry_round + 1
            while window_s > 0:
                due = window_t0 + window_s * (window_round + 1 + window_next / devices)
                now = time.monotonic()
                if now < due:
                    break
                d = fleet_devices[window_next]
                end = datetime.now(timezone.utc)  # each window ends as its device sends it
                d.publish(TopicKind.MONITOR, d.window(window_starts.get(d.device_id, window_start),
                                                      end, window_queries, rng))
                loop.poll(0)
                window_starts[d.device_id] = end
                window_lateness_s.append(now - due)
                windows_sent += 1
                window_next += 1
                if window_next == devices:
                    window_next, window_round = 0, window_round + 1

        t0 = time.monotonic()
        for n in range(messages):
            if stop.is_set():
                break
            device = fleet_devices[n % devices]
            device.seq += 1
            result = synthetic_result(rng, device.device_id, fleet, device.seq, device.board_index)
            device.publish(TopicKind.RESULT, pack(result.model_dump_json().encode()))  # as agents
            sent_ids.append(str(result.run_id))
            loop.poll(0)
            if rate > 0:
                while (delay := t0 + (n + 1) / rate - time.monotonic()) > 0 and not stop.is_set():
                    loop.poll(delay)
            periodic()
        with contextlib.suppress(BrokerError):  # counted below as not acknowledged
            loop.run_until(lambda: not any(d.unacknowledged() for d in fleet_devices), timeout_s,
                           "acknowledgements", stop)
        unacknowledged = sum(d.unacknowledged() for d in fleet_devices)
        send_s = time.monotonic() - t0
        if sent_file is not None:
            sent_file.write_text("".join(f"{r}\n" for r in sent_ids))
        if hold_s:
            hold_until = time.monotonic() + (float("inf") if hold_s < 0 else hold_s)
            while time.monotonic() < hold_until and not stop.is_set():
                loop.poll(min(0.05, hold_until - time.monotonic()))
                periodic()
        for device in fleet_devices:
            if device.connected:
                device.publish(TopicKind.STATUS, device.status("offline"), retain=True)
        with contextlib.suppress(BrokerError):  # the Last Will says offline for the others
            loop.run_until(lambda: not any(d.unacknowledged() for d in fleet_devices), 10.0,
                           "offline statuses")
    finally:
        loop.close()
    return {"devices": devices, "results_sent": len(sent_ids),
            "results_acknowledged": len(sent_ids) - unacknowledged,
            "connect_s": round(connected_s, 3), "send_s": round(send_s, 3),
            "results_per_s": round(len(sent_ids) / send_s, 1) if send_s > 0 else None,
            "windows_sent": windows_sent, "telemetry_sent": telemetry_sent,
            "window_late_s_max": round(max(window_lateness_s), 3) if window_lateness_s else None,
            "fleet": fleet}


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` (no further than the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return int(soft)


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    try:
        summary = simulate(args.mqtt, args.devices, args.messages, rate=args.rate,
                           fleet=args.fleet, prefix=args.prefix, seed=args.seed,
                           telemetry_s=args.telemetry_s, hold_s=args.hold_s,
                           sent_file=args.sent, stop=stop, window_s=args.window_s,
                           window_queries=args.window_queries)
    except KeyboardInterrupt:
        stop.set()
        raise
    print(json.dumps(summary))
    return 0 if summary["results_acknowledged"] == summary["results_sent"] else 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


DESCRIPTION = (
    "A fleet of virtual devices for load tests, demos and scale checks. Each is a real MQTT "
    "client with its own client id, a retained birth and a Last Will, telemetry at start and "
    "every --telemetry-s, and schema-valid results at QoS 1 with a growing seq, from a seeded "
    "generator (one seed, the same figures; run ids are always new). --messages is the total "
    "number of results, dealt to the devices in turn; --rate caps results per second over the "
    "whole fleet (0: as fast as the broker takes them). At the end every device says offline, "
    "unless --hold-s keeps the fleet online longer (-1: until Ctrl-C). The broker must allow one "
    "client per device (Mosquitto: max_connections -1 and a ulimit -n above the device count). "
    "Prints a JSON summary (devices, results sent and acknowledged, seconds); --sent FILE writes "
    "every run_id sent, one a line."
)

def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("simulate", help="a fleet of virtual devices publishing to a broker",
                            description=DESCRIPTION)
    parser.add_argument("--mqtt", required=True, metavar="URL", help="broker, mqtt://host:port")
    parser.add_argument("--devices", type=_positive, default=10, help="virtual devices (default 10)")
    parser.add_argument("--messages", type=int, default=100,
                        help="results in all, dealt to the devices in turn (default 100)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="results per second over the fleet (default 0: as fast as possible)")
    parser.add_argument("--fleet", default="sim", help="fleet name (default sim)")
    parser.add_argument("--prefix", default="sim-", help="device id prefix (default sim-)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the figures (default 0)")
    parser.add_argument("--telemetry-s", type=float, default=10.0, help="telemetry period")
    parser.add_argument("--hold-s", type=float, default=0.0,
                        help="stay online this long after sending (-1: until Ctrl-C)")
    parser.add_argument("--sent", type=Path, metavar="FILE", help="write every run_id sent here")
    parser.add_argument("--window-s", type=float, default=0.0,
                        help="also publish a monitor window per device this often (default 0: none)")
    parser.add_argument("--window-queries", type=int, default=100,
                        help="latencies in each monitor window (default 100)")
    parser.set_defaults(func=_run)

