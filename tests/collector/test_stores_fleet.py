"""The store's fleet side: devices (presence, telemetry, newest result), jobs and acks, models,
bounded de-duplicated dead letters and seq gaps. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from collector.stores.sql import DEAD_LETTER_MAX_BYTES, SqlStore
from shared.messages import AgentManifest, JobAck, JobCommand, ModelRef, Status, Telemetry
from shared.schema import DeviceManifest, EnergyReport, PowerScope
from tests.factories import make_result

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TOPIC = "edgemeter/v1/lab/pi-01/result"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def fleet_store(store_url: str, clock: Clock) -> Iterator[SqlStore]:
    opened = SqlStore(store_url, clock=clock)
    try:
        opened.migrate()
        yield opened
    finally:
        opened.close()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def manifest(version: str = "1.0") -> AgentManifest:
    return AgentManifest(agent_version=version, device=DeviceManifest(hostname="pi-01"),
                         runtimes={"litert": "1.4.0"})


def status(state: str, bd_seq: int, *, version: str = "1.0", fleet: str = "lab",
           device_id: str = "pi-01") -> Status:
    return Status(device_id=device_id, fleet=fleet, status=state,  # type: ignore[arg-type]
                  bd_seq=bd_seq, manifest=manifest(version) if state == "online" else None)


# -- devices: presence --------------------------------------------------------------------------


def test_a_first_birth_creates_the_device_with_its_manifest(fleet_store: SqlStore) -> None:
    assert fleet_store.record_status(status("online", 3), at(10)) is True
    [device] = fleet_store.list_devices()
    assert (device.device_id, device.fleet, device.status, device.bd_seq) == ("pi-01", "lab",
                                                                              "online", 3)
    assert device.first_seen == device.last_seen == at(10)
    assert device.manifest == manifest()


def test_the_same_birth_again_changes_nothing_but_says_so(fleet_store: SqlStore) -> None:
    fleet_store.record_status(status("online", 3), at(10))
    assert fleet_store.record_status(status("online", 3), at(20)) is False
    assert fleet_store.record_status(status("online", 3, version="1.1"), at(30)) is True
    [device] = fleet_store.list_devices()
    assert device.manifest == manifest("1.1") and device.first_seen == at(10)


def test_a_stale_last_will_is_ignored_and_does_not_move_last_seen(fleet_store: SqlStore) -> None:
    fleet_store.record_status(status("online", 4), at(10))
    assert fleet_store.record_status(status("offline", 3), at(20)) is False
    [device] = fleet_store.list_devices()
    assert (device.status, device.bd_seq, device.last_seen) == ("online", 4, at(10))


def test_a_death_keeps_the_last_births_manifest_and_a_restarted_counter_is_accepted(
    fleet_store: SqlStore,
) -> None:
    fleet_store.record_status(status("online", 4), at(10))
    assert fleet_store.record_status(status("offline", 4), at(20)) is True
    [device] = fleet_store.list_devices()
    assert (device.status, device.manifest, device.last_seen) == ("offline", manifest(), at(20))
    assert fleet_store.record_status(status("online", 0, version="2.0"), at(30)) is True
    [device] = fleet_store.list_devices()
    assert (device.status, device.bd_seq, device.manifest) == ("online", 0, manifest("2.0"))


def test_statuses_arriving_late_keep_last_seen_at_the_newest(fleet_store: SqlStore) -> None:
    fleet_store.record_status(status("online", 1), at(50))
    fleet_store.record_status(status("offline", 1), at(40))  # received_at older: another collector
    [device] = fleet_store.list_devices()
    assert (device.status, device.last_seen) == ("offline", at(50))


# -- devices: telemetry and the newest result ---------------------------------------------------


def telemetry(sent_s: float, depth: int, device_id: str = "pi-01") -> Telemetry:
    return Telemetry(device_id=device_id, fleet="lab", sent_at=at(sent_s), uptime_s=sent_s,
                     spool_depth=depth, current_job="j1")


def test_telemetry_creates_an_unknown_device_and_keeps_the_newest(fleet_store: SqlStore) -> None:
    fleet_store.record_telemetry(telemetry(10, 1), at(11))
    [device] = fleet_store.list_devices()
    assert (device.status, device.bd_seq, device.first_seen) == ("unknown", None, at(11))
    assert device.telemetry == telemetry(10, 1)
    fleet_store.record_telemetry(telemetry(30, 3), at(31))
    fleet_store.record_telemetry(telemetry(20, 2), at(32))  # sent earlier, arrived later
    [device] = fleet_store.list_devices()
    assert device.telemetry is not None and device.telemetry.spool_depth == 3
    assert device.last_seen == at(32) and device.first_seen == at(11)


def test_a_birth_after_telemetry_sets_presence_on_the_same_row(fleet_store: SqlStore) -> None:
    fleet_store.record_telemetry(telemetry(10, 1), at(10))
    assert fleet_store.record_status(status("online", 1), at(20)) is True
    [device] = fleet_store.list_devices()
    assert (device.status, device.first_seen, device.telemetry) == ("online", at(10),
                                                                     telemetry(10, 1))


def test_devices_filter_by_fleet_and_come_by_id(fleet_store: SqlStore) -> None:
    fleet_store.record_status(status("online", 1, device_id="b", fleet="lab"), at(1))
    fleet_store.record_status(status("online", 1, device_id="a", fleet="lab"), at(1))
    fleet_store.record_status(status("online", 1, device_id="c", fleet="field"), at(1))
    assert [d.device_id for d in fleet_store.list_devices()] == ["a", "b", "c"]
    assert [d.device_id for d in fleet_store.list_devices(fleet="lab")] == ["a", "b"]
    assert fleet_store.list_devices(fleet="none") == []


def test_results_keep_each_devices_newest_figures(fleet_store: SqlStore, clock: Clock) -> None:
    energy = EnergyReport(source="ina3221", scope=PowerScope.BOARD, estimated=False,
                          avg_power_w=4.5, energy_j=1.0, joules_per_inference=0.01)
    old = make_result(device_id="pi-01", seq=0, created_at=at(10), p50_ms=3.0)
    new = make_result(device_id="pi-01", seq=1, created_at=at(20), p50_ms=2.0, energy=energy,
                      model_name="mobilenet.onnx", fmt="onnx")
    other = make_result(device_id="pi-02", seq=0, created_at=at(5))
    fleet_store.add_results([new, old, other])
    late_old = make_result(device_id="pi-01", seq=2, created_at=at(15), p50_ms=9.0)
    clock.advance(60)
    fleet_store.add_results([late_old])  # arrives last, but is older than `new`
    devices = {d.device_id: d for d in fleet_store.list_devices()}
    pi1 = devices["pi-01"]
    assert (pi1.latest_run_id, pi1.latest_p50_ms, pi1.latest_power_w, pi1.latest_model) == (
        str(new.run_id), new.latency_ms.p50, 4.5, "mobilenet.onnx")
    assert pi1.status == "unknown" and pi1.first_seen == T0
    assert (devices["pi-02"].latest_run_id, devices["pi-02"].latest_power_w) == (
        str(other.run_id), None)


def test_presence_does_not_touch_the_newest_result(fleet_store: SqlStore) -> None:
    result = make_result(device_id="pi-01", created_at=at(1))
    fleet_store.add_results([result])
    fleet_store.record_status(status("online", 1), at(2))
    fleet_store.record_telemetry(telemetry(3, 0), at(3))
    [device] = fleet_store.list_devices()
    assert device.latest_run_id == str(result.run_id) and device.status == "online"


# -- jobs ---------------------------------------------------------------------------------------


def job(created_s: float = 0) -> JobCommand:
    return JobCommand(model=ModelRef(sha256="ab" * 32, name="m.onnx"), created_at=at(created_s))


def ack(job_id: str, state: str, sent_s: float, **kw: object) -> JobAck:
    return JobAck(device_id="pi-01", fleet="lab", job_id=job_id, state=state,  # type: ignore[arg-type]
                  sent_at=at(sent_s), **kw)  # type: ignore[arg-type]


def test_a_recorded_job_follows_its_acks(fleet_store: SqlStore) -> None:
    sent = job()
    fleet_store.record_job(sent, device_id="pi-01", fleet="lab")
    fleet_store.record_job(sent, device_id="pi-01", fleet="lab")  # recorded twice: one row
    [record] = fleet_store.list_jobs()
    assert (record.job_id, record.state, record.kind, record.model_name) == (
        sent.job_id, "sent", "benchmark", "m.onnx")
    assert record.command == sent
    run_id = uuid.uuid4()
    fleet_store.record_ack(ack(sent.job_id, "running", 1), at(1))
    fleet_store.record_ack(ack(sent.job_id, "done", 5, run_id=run_id), at(5))
    [record] = fleet_store.list_jobs()
    assert (record.state, record.run_id, record.updated_at) == ("done", str(run_id), at(5))


def test_an_ack_sent_before_the_applied_one_changes_nothing(fleet_store: SqlStore) -> None:
    sent = job()
    fleet_store.record_job(sent, device_id="pi-01", fleet="lab")
    fleet_store.record_ack(ack(sent.job_id, "failed", 5, reason="model missing"), at(5))
    fleet_store.record_ack(ack(sent.job_id, "running", 1), at(6))
    [record] = fleet_store.list_jobs()
    assert (record.state, record.reason) == ("failed", "model missing")


def test_an_ack_for_a_job_never_recorded_creates_it(fleet_store: SqlStore) -> None:
    fleet_store.record_ack(ack("cli-job", "accepted", 1), at(2))
    [record] = fleet_store.list_jobs(device_id="pi-01")
    assert (record.job_id, record.state, record.kind, record.command) == (
        "cli-job", "accepted", "unknown", None)


def test_jobs_come_newest_first_per_device_and_limited(fleet_store: SqlStore) -> None:
    jobs = [job(created_s=s) for s in (1, 3, 2)]
    for i, j in enumerate(jobs):
        fleet_store.record_job(j, device_id=f"pi-0{i % 2}", fleet="lab")
    assert [r.job_id for r in fleet_store.list_jobs()] == [jobs[1].job_id, jobs[2].job_id,
                                                           jobs[0].job_id]
    assert [r.job_id for r in fleet_store.list_jobs(device_id="pi-00")] == [jobs[2].job_id,
                                                                            jobs[0].job_id]
    assert [r.job_id for r in fleet_store.list_jobs(limit=1)] == [jobs[1].job_id]


# -- models -------------------------------------------------------------------------------------


def test_models_are_kept_by_content(fleet_store: SqlStore) -> None:
    content = b"TFL3" + bytes(range(256)) * 10
    sha = fleet_store.add_model("vww.tflite", content)
    assert sha == hashlib.sha256(content).hexdigest()
    assert fleet_store.add_model("renamed.tflite", content) == sha
    assert fleet_store.get_model(sha) == ("vww.tflite", content)
    assert fleet_store.get_model("00" * 32) is None
    [record] = fleet_store.list_models()
    assert (record.sha256, record.name, record.size_bytes, record.added_at) == (
        sha, "vww.tflite", len(content), T0)


# -- dead letters -------------------------------------------------------------------------------


def test_a_dead_letter_keeps_64_kib_with_the_full_size_and_hash(fleet_store: SqlStore) -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB
    fleet_store.add_dead_letter(TOPIC, "too big", payload, device_id="pi-01")
    [letter] = fleet_store.list_dead_letters()
    assert letter.payload == payload[:DEAD_LETTER_MAX_BYTES] and letter.truncated
    assert (letter.size_bytes, letter.sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert (letter.device_id, letter.count, letter.first_seen, letter.last_seen) == (
        "pi-01", 1, T0, T0)


def test_a_repeated_dead_letter_is_one_row_with_a_count(fleet_store: SqlStore, clock: Clock) -> None:
    fleet_store.add_dead_letter(TOPIC, "bad", b"x", device_id="pi-01")
    clock.advance(10)
    fleet_store.add_dead_letter(TOPIC, "bad", b"x", device_id="pi-01")
    fleet_store.add_dead_letter(TOPIC, "bad", b"x", device_id="pi-02")  # another device
    fleet_store.add_dead_letter("junk", "no device", b"x")
    fleet_store.add_dead_letter("junk", "no device", b"x")
    letters = fleet_store.list_dead_letters()
    assert [(d.device_id, d.count) for d in letters] == [("pi-01", 2), ("pi-02", 1), (None, 2)]
    assert (letters[0].first_seen, letters[0].last_seen) == (T0, at(10))


def test_a_retained_dead_letter_already_stored_is_not_counted_again(
    fleet_store: SqlStore, clock: Clock,
) -> None:
    topic = "edgemeter/v1/lab/pi-01/status"
    fleet_store.add_dead_letter(topic, "bad status", b"{}", device_id="pi-01", retained=True)
    clock.advance(10)
    fleet_store.add_dead_letter(topic, "bad status", b"{}", device_id="pi-01", retained=True)
    [letter] = fleet_store.list_dead_letters()
    assert (letter.count, letter.last_seen) == (1, T0)


def test_dead_letters_by_reason_by_id_counted_and_deleted(fleet_store: SqlStore) -> None:
    for i, reason in enumerate(["not JSON", "schema", "not JSON", "not JSON"]):
        fleet_store.add_dead_letter(TOPIC, reason, b"%d" % (i % 3), device_id="pi-01")
    letters = fleet_store.list_dead_letters()
    assert [(d.reason, d.count) for d in letters] == [("not JSON", 2), ("schema", 1),
                                                      ("not JSON", 1)]
    assert [d.id for d in fleet_store.list_dead_letters(reason="schema")] == [letters[1].id]
    assert fleet_store.list_dead_letters(1, reason="not JSON") == [letters[2]]
    assert fleet_store.count_dead_letters() == [("not JSON", 2, 3), ("schema", 1, 1)]
    assert letters[0].id is not None
    assert fleet_store.get_dead_letter(letters[0].id) == letters[0]
    assert fleet_store.get_dead_letter(10_000) is None
    assert fleet_store.delete_dead_letters([letters[0].id, 10_000]) == 1
    assert fleet_store.delete_dead_letters([]) == 0
    assert fleet_store.delete_dead_letters() == 2
    assert fleet_store.list_dead_letters() == []


# -- seq gaps -----------------------------------------------------------------------------------


def test_seq_gaps_per_device_and_a_filled_range_disappears(fleet_store: SqlStore) -> None:
    fleet_store.add_results([make_result(seq=s) for s in (0, 1, 2, 5, 9, 10)])
    fleet_store.add_results([make_result(device_id="pi-02", fleet="lab", seq=s)
                             for s in (3, 4, 7)])
    gaps = fleet_store.seq_gaps()
    assert [(g.device_id, g.fleet, g.first_missing, g.last_missing) for g in gaps] == [
        ("pi-01", "default", 3, 4), ("pi-01", "default", 6, 8), ("pi-02", "lab", 5, 6)]
    assert gaps[1].missing == 3
    fleet_store.add_results([make_result(seq=s) for s in (3, 4, 7)])  # the spool catches up
    assert [(g.first_missing, g.last_missing) for g in fleet_store.seq_gaps(device_id="pi-01")] \
        == [(6, 6), (8, 8)]
    assert fleet_store.seq_gaps(device_id="nobody") == []
