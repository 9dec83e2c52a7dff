"""``edgemeter simulate``: a fleet of virtual devices for load tests, demos and scale checks.

Each virtual device is a real MQTT client with its own client id, a retained birth and a Last Will
(:class:`shared.messages.Status`, ``bd_seq`` 1), a telemetry message at start and every
``--telemetry-s``, and schema-valid results at QoS 1 with a growing ``seq``: varied models,
boards, runtimes and numbers from a seeded generator, so two runs with one seed send the same
figures (run ids are always new). ``--messages`` is the total number of results, dealt to the
devices in turn; ``--rate`` caps results per second over the whole fleet (0: as fast as the broker
takes them). At the end every device says ``offline`` itself, unless ``--hold-s`` keeps the fleet
online a while longer (0 with ``--hold-s -1``: until Ctrl-C).

It prints a JSON summary on stdout — devices, results sent and acknowledged, seconds — and with
``--sent FILE`` writes every run_id it sent, one a line, so a test can compare what was sent with
what was stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from shared import latency
from shared.errors import BrokerError
from shared.messages import AgentManifest, Status, Telemetry
from shared.mqtt import parse_broker_url
from shared.schema import (
    BenchmarkResult,
    DeviceManifest,
    LatencySummary,
    ModelInfo,
    RawLatencies,
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


def synthetic_result(rng: random.Random, device_id: str, fleet: str, seq: int,
                     board_index: int) -> BenchmarkResult:
    """One schema-valid result with plausible, varied figures (nothing here was measured)."""
    board, cpu, cores, machine, slowdown = BOARDS[board_index % len(BOARDS)]
    name, network, fmt, precision, macs, p50_ref = rng.choice(MODELS)
    p50_ms = p50_ref * slowdown * rng.uniform(0.9, 1.15)
    count = rng.randint(100, 400)
    lat_ns = sorted(max(1.0, rng.gauss(p50_ms * 1e6, p50_ms * 3e4)) for _ in range(count))
    ms = [v / 1e6 for v in lat_ns]
    buckets, counts = latency.encode(np.asarray(lat_ns))
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
        validity=Validity(valid=True), latencies=RawLatencies(buckets=buckets, counts=counts),
        labels={"simulated": "true"},
    )


@dataclass
class VirtualDevice:
    device_id: str
    fleet: str
    board_index: int
    client: Any = None
    seq: int = 0
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


def connect_device(url: str, device: VirtualDevice, timeout_s: float = 30.0) -> None:
    import paho.mqtt.client as mqtt

    broker = parse_broker_url(url)
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"edgemeter-sim-{device.device_id}", protocol=mqtt.MQTTv311)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    will = Status(device_id=device.device_id, fleet=device.fleet, status="offline", bd_seq=1)
    client.will_set(device.topic(TopicKind.STATUS), will.model_dump_json(exclude_none=True),
                    qos=1, retain=True)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    try:
        client.connect(broker.host, broker.port, keepalive=60)
    except OSError as err:
        raise BrokerError(f"cannot reach the broker at {broker}: {err.strerror or err}") from err
    client.loop_start()
    if not connected.wait(timeout_s):
        client.loop_stop()
        raise BrokerError(f"broker {broker} did not accept device {device.device_id} "
                          f"within {timeout_s:.0f} s")
    device.client = client
    client.publish(device.topic(TopicKind.STATUS), device.status("online"), qos=1, retain=True)


def simulate(url: str, devices: int, messages: int, *, rate: float = 0.0, fleet: str = "sim",
             prefix: str = "sim-", seed: int = 0, telemetry_s: float = 10.0, hold_s: float = 0.0,
             sent_file: Path | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Run the virtual fleet; returns the summary that the command prints."""
    rng = random.Random(seed)
    stop = stop or threading.Event()
    fleet_devices = [VirtualDevice(f"{prefix}{i:04d}", fleet, i) for i in range(devices)]
    started = time.monotonic()
    for device in fleet_devices:
        connect_device(url, device)
        device.client.publish(device.topic(TopicKind.TELEMETRY), device.telemetry(0, rng), qos=0)
    connected_s = time.monotonic() - started
    sent_ids: list[str] = []
    next_telemetry = time.monotonic() + telemetry_s
    t0 = time.monotonic()
    for n in range(messages):
        if stop.is_set():
            break
        device = fleet_devices[n % devices]
        device.seq += 1
        result = synthetic_result(rng, device.device_id, fleet, device.seq, device.board_index)
        run_id = str(result.run_id)
        device.pending.append(device.client.publish(
            device.topic(TopicKind.RESULT), result.model_dump_json().encode(), qos=1))
        sent_ids.append(run_id)
        if rate > 0:
            delay = t0 + (n + 1) / rate - time.monotonic()
            if delay > 0:
                stop.wait(delay)
        if time.monotonic() >= next_telemetry:
            next_telemetry += telemetry_s
            for d in fleet_devices:
                d.client.publish(d.topic(TopicKind.TELEMETRY),
                                 d.telemetry(time.monotonic() - started, rng), qos=0)
    acknowledged = 0
    for device in fleet_devices:
        for info in device.pending:
            info.wait_for_publish(timeout=60)
            acknowledged += int(info.is_published())
    send_s = time.monotonic() - t0
    if sent_file is not None:
        sent_file.write_text("".join(f"{r}\n" for r in sent_ids))
    if hold_s:
        stop.wait(None if hold_s < 0 else hold_s)
    for device in fleet_devices:
        info = device.client.publish(device.topic(TopicKind.STATUS), device.status("offline"),
                                     qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        device.client.disconnect()
        device.client.loop_stop()
    return {"devices": devices, "results_sent": len(sent_ids), "results_acknowledged": acknowledged,
            "connect_s": round(connected_s, 3), "send_s": round(send_s, 3),
            "results_per_s": round(len(sent_ids) / send_s, 1) if send_s > 0 else None,
            "fleet": fleet}


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    try:
        summary = simulate(args.mqtt, args.devices, args.messages, rate=args.rate,
                           fleet=args.fleet, prefix=args.prefix, seed=args.seed,
                           telemetry_s=args.telemetry_s, hold_s=args.hold_s,
                           sent_file=args.sent, stop=stop)
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


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("simulate", help="a fleet of virtual devices publishing to a broker",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.set_defaults(func=_run)

