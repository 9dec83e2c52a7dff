"""The fleet view's pure parts: progress from the bus, device objects, filter/sort, selectors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from collector.events import EventBus
from collector.http.fleet import PROGRESS_STALE_S, ProgressBoard, device_object, select_devices, sort_and_filter
from shared.messages import AgentManifest, Telemetry
from shared.schema import DeviceManifest

SEEN = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Row:
    """The fields a store's DeviceRecord has (collector.http.store.DeviceRow)."""

    device_id: str
    fleet: str = "lab"
    status: str = "online"
    bd_seq: int | None = 1
    first_seen: datetime | None = SEEN
    last_seen: datetime | None = SEEN
    manifest: AgentManifest | None = None
    telemetry: Telemetry | None = None
    latest_run_id: str | None = None
    latest_p50_ms: float | None = None
    latest_power_w: float | None = None
    latest_model: str | None = None


def _manifest(board: str) -> AgentManifest:
    return AgentManifest(agent_version="1", device=DeviceManifest(hostname="h", board=board),
                         runtimes={"litert": "1.4.0", "onnxruntime": "1.22.0"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _progress(device: str, job: str, done: int) -> dict[str, object]:
    return {"device_id": device, "fleet": "lab", "job_id": job, "phase": "measure",
            "iterations_done": done, "running_p50_ms": 2.0, "power_w": None, "sent_at": "x"}


def test_progress_board_keeps_the_newest_progress_per_device() -> None:
    bus = EventBus()
    board = ProgressBoard(bus, Clock())
    bus.publish("progress", _progress("a", "j1", 10))
    bus.publish("progress", _progress("a", "j1", 20))
    bus.publish("telemetry", {"device_id": "a"})
    assert board.snapshot() == {"a": {"job_id": "j1", "phase": "measure", "iterations_done": 20,
                                      "running_p50_ms": 2.0, "power_w": None}}


def test_progress_is_dropped_when_the_jobs_ack_says_it_ended() -> None:
    bus = EventBus()
    board = ProgressBoard(bus, Clock())
    bus.publish("progress", _progress("a", "j1", 10))
    bus.publish("progress", _progress("b", "j2", 10))
    bus.publish("ack", {"device_id": "a", "job_id": "j1", "state": "running"})
    bus.publish("ack", {"device_id": "b", "job_id": "old", "state": "done"})  # another job
    assert set(board.snapshot()) == {"a", "b"}
    bus.publish("ack", {"device_id": "a", "job_id": "j1", "state": "done"})
    bus.publish("ack", {"device_id": "b", "job_id": "j2", "state": "failed"})
    assert board.snapshot() == {}


def test_progress_that_stops_coming_goes_stale() -> None:
    bus, clock = EventBus(), Clock()
    board = ProgressBoard(bus, clock)
    bus.publish("progress", _progress("a", "j1", 10))
    assert "a" in board.snapshot()
    clock.now += PROGRESS_STALE_S + 1
    assert board.snapshot() == {}


def test_device_object_has_the_contract_fields() -> None:
    telemetry = Telemetry(device_id="pi", fleet="lab", uptime_s=5, spool_depth=3,
                          current_job="j9")
    row = Row("pi", manifest=_manifest("Raspberry Pi 5"), telemetry=telemetry,
              latest_run_id="r1", latest_p50_ms=2.5, latest_power_w=4.0,
              latest_model="vww.tflite")
    obj = device_object(row, {"job_id": "j9", "phase": "measure"})
    assert list(obj) == ["device_id", "fleet", "status", "bd_seq", "first_seen", "last_seen",
                         "board", "runtime", "current_job", "progress", "latest_p50_ms",
                         "latest_power_w", "latest_model", "latest_run_id", "spool_depth"]
    assert obj["board"] == "Raspberry Pi 5"
    assert obj["runtime"] == "litert 1.4.0, onnxruntime 1.22.0"
    assert (obj["current_job"], obj["spool_depth"]) == ("j9", 3)
    assert obj["last_seen"] == "2026-03-01T12:00:00+00:00"
    bare = device_object(Row("x", status="unknown", manifest=None), None)
    assert (bare["board"], bare["runtime"], bare["progress"], bare["spool_depth"]) == \
        (None, None, None, None)


def test_filter_by_status_and_text_sort_either_way_with_missing_values_last() -> None:
    devices = [device_object(r, None) for r in (
        Row("c", latest_p50_ms=3.0, manifest=_manifest("Jetson Orin")),
        Row("a", latest_p50_ms=1.0, status="offline"),
        Row("b", latest_p50_ms=None),
        Row("d", latest_p50_ms=2.0),
    )]
    ids = lambda ds: [d["device_id"] for d in ds]  # noqa: E731
    assert ids(sort_and_filter(devices, status=None, q=None, sort="latest_p50_ms")) == \
        ["a", "d", "c", "b"]
    assert ids(sort_and_filter(devices, status=None, q=None, sort="-latest_p50_ms")) == \
        ["c", "d", "a", "b"]
    assert ids(sort_and_filter(devices, status="online", q=None, sort="device_id")) == \
        ["b", "c", "d"]
    assert ids(sort_and_filter(devices, status=None, q="jetson", sort="device_id")) == ["c"]


def test_selector_takes_ids_globs_fleets_and_boards() -> None:
    rows = [Row("pi-01", manifest=_manifest("Raspberry Pi 5")), Row("pi-02", fleet="lab2"),
            Row("jet-1", fleet="lab2", manifest=_manifest("Jetson Orin Nano"))]
    pick = lambda sel: [r.device_id for r in select_devices(rows, sel)]  # noqa: E731
    assert pick("pi-*") == ["pi-01", "pi-02"]
    assert pick("fleet=lab2") == ["pi-02", "jet-1"]
    assert pick("board=orin, pi-01") == ["pi-01", "jet-1"]
    assert pick("nothing") == []
