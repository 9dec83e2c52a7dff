"""Which status wins, and how ``fleet ls``/``fleet run`` fold and select what the broker says."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from edgemeter.commands.fleet import DeviceView, FleetWatch, model_ref, select
from shared.errors import ConfigError
from shared.messages import AgentManifest, Status, Telemetry
from shared.presence import status_wins
from shared.schema import DeviceManifest


def status(state: str, bd_seq: int, board: str | None = None, device: str = "pi-1",
           fleet: str = "lab") -> Status:
    manifest = AgentManifest(agent_version="t", device=DeviceManifest(hostname="h", board=board)) \
        if state == "online" else None
    return Status(device_id=device, fleet=fleet, status=state, bd_seq=bd_seq,
                  sent_at=datetime.now(timezone.utc), manifest=manifest)


@pytest.mark.parametrize(("current", "incoming", "wins"), [
    (None, ("online", 1), True),
    (("online", 3), ("offline", 2), False),  # a stale Last Will from an older connection
    (("online", 3), ("offline", 3), True),  # the death of the current connection
    (("offline", 3), ("online", 4), True),
    (("online", 3), ("online", 4), True),
    (("offline", 9), ("online", 1), True),  # the device lost its spool: its counter restarted
    (("online", 5), ("online", 2), False),
])
def test_a_death_older_than_the_current_birth_is_ignored(
    current: tuple[str, int] | None, incoming: tuple[str, int], wins: bool,
) -> None:
    now = status(*current) if current else None
    assert status_wins(now, status(*incoming)) is wins


def test_the_watch_keeps_the_winning_status_and_the_latest_telemetry() -> None:
    watch = FleetWatch()
    topic = "edgemeter/v1/lab/pi-1/"
    watch.on_message(topic + "status", status("online", 4, board="Raspberry Pi 5").model_dump_json().encode())
    watch.on_message(topic + "status", status("offline", 3).model_dump_json().encode())
    watch.on_message(topic + "telemetry", Telemetry(device_id="pi-1", fleet="lab", uptime_s=5,
                                                    spool_depth=2).model_dump_json().encode())
    watch.on_message(topic + "telemetry", b"not json at all")
    row = watch.devices[("lab", "pi-1")].row()
    assert (row["status"], row["bd_seq"], row["board"], row["spool_depth"]) == (
        "online", 4, "Raspberry Pi 5", 2)


def test_selectors_pick_by_id_glob_fleet_and_board() -> None:
    views = [DeviceView("pi-1", "lab", status("online", 1, board="Raspberry Pi 5 Model B")),
             DeviceView("pi-2", "lab", status("online", 1, board="Raspberry Pi 4")),
             DeviceView("orin-1", "field", status("online", 1, board="Jetson AGX Orin"))]
    ids = lambda sel: [v.device_id for v in select(views, sel)]  # noqa: E731
    assert ids("pi-*") == ["pi-1", "pi-2"]
    assert ids("fleet=field") == ["orin-1"]
    assert ids("board=pi 5") == ["pi-1"]
    assert ids("orin-1,pi-2") == ["pi-2", "orin-1"]
    assert ids("nothing") == []


def test_a_model_is_named_by_file_or_by_sha256(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x00" * 10)
    ref, path = model_ref(str(model))
    assert path == model and ref.size_bytes == 10 and len(ref.sha256) == 64
    ref, path = model_ref("a" * 64 + ":vww.onnx")
    assert (ref.name, path) == ("vww.onnx", None)
    with pytest.raises(ConfigError):
        model_ref("/no/such/file.onnx")
