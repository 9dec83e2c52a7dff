"""What `fleet ls` and `fleet run` show a new user: devices only (not the collector), the board and
runtime of a device that went offline, and a refusal when the collector lacks the model."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.health import COLLECTOR_FLEET, CollectorStatus
from edgemeter.cli import main
from edgemeter.commands.fleet import FleetWatch
from shared.messages import AgentManifest, Status
from shared.mqtt import connect
from shared.schema import DeviceManifest
from shared.topics import TopicKind, Topics


def _status(state: str, bd_seq: int) -> bytes:
    manifest = AgentManifest(agent_version="t", runtimes={"litert": "2.3.0"},
                             device=DeviceManifest(hostname="h", board="Raspberry Pi 5")) \
        if state == "online" else None
    return Status(device_id="pi-1", fleet="lab", status=state, bd_seq=bd_seq,
                  sent_at=datetime.now(timezone.utc), manifest=manifest).model_dump_json().encode()


def test_a_device_that_went_offline_keeps_its_board_and_runtime() -> None:
    watch = FleetWatch()
    watch.on_message("edgemeter/v1/lab/pi-1/status", _status("online", 4))
    watch.on_message("edgemeter/v1/lab/pi-1/status", _status("offline", 4))
    row = watch.devices[("lab", "pi-1")].row()
    assert (row["status"], row["board"], row["runtime"]) == ("offline", "Raspberry Pi 5",
                                                             "litert 2.3.0")


def test_the_collectors_own_presence_is_not_listed_as_a_device() -> None:
    watch = FleetWatch()
    presence = CollectorStatus(collector="collector-1", state="online",
                               since=datetime.now(timezone.utc))
    topic = f"edgemeter/v1/{COLLECTOR_FLEET}/collector-1/status"
    watch.on_message(topic, presence.model_dump_json().encode())
    watch.on_message("edgemeter/v1/lab/pi-1/status", _status("online", 1))
    assert list(watch.devices) == [("lab", "pi-1")]


class _NoModels(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def models_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoModels)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fleet_run_refuses_a_model_the_collector_lacks_with_exit_2(
    models_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    model = tmp_path / "tiny.tflite"
    model.write_bytes(b"TFL3" + b"\x00" * 60)
    code = main(["fleet", "run", "--mqtt", "mqtt://127.0.0.1:1", "--devices", "pi-*",
                 "--model", str(model), "--models-url", models_url])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not have it yet" in err and f"edgemeter models add {model}" in err
    assert "sent" not in err  # refused before any broker connection


def test_fleet_monitor_refuses_a_model_no_selected_device_can_run_before_sending(
    mosquitto_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """#21's rule holds for monitoring jobs too: a LiteRT-only board never gets an ONNX one."""
    fleet = f"m{uuid.uuid4().hex[:6]}"
    birth = Status(device_id="lite-1", fleet=fleet, status="online", bd_seq=1,
                   manifest=AgentManifest(agent_version="t", device=DeviceManifest(hostname="l"),
                                          formats=["tflite"], backends={"litert": "2.3.0"}))
    topic = Topics.build(fleet, "lite-1", TopicKind.STATUS)
    with connect(mosquitto_url, f"birth-{fleet}") as conn:
        conn.publish(topic, birth.model_dump_json().encode(), qos=1, retain=True)
        try:
            code = main(["fleet", "monitor", "--mqtt", mosquitto_url, "--devices",
                         f"fleet={fleet}", "--model", "a" * 64 + ":resnet.onnx",
                         "--rate-qps", "5", "--listen-s", "1"])
        finally:
            conn.publish(topic, b"", qos=1, retain=True)
    out, err = capsys.readouterr()
    assert code == 2
    assert "no selected device can run resnet.onnx: lite-1: no onnxruntime runtime" in err
    assert out == ""  # no job id: nothing was sent
