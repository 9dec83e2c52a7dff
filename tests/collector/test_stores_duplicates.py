"""A run_id seen again: identical content is deduplicated silently; other content is refused as a
dead letter and moves neither the device's latest result nor any series (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from collector.stores.sql import SqlStore
from shared.schema import BenchmarkResult
from tests.collector.test_stores_series import series_rows
from tests.factories import make_result

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def result(device: str, minute: int, **changes: object) -> BenchmarkResult:
    return make_result(device_id=device, seq=minute, created_at=T0 + timedelta(minutes=minute),
                       **changes)


def latest(store: SqlStore, device: str) -> tuple[str | None, float | None]:
    row = next(d for d in store.list_devices() if d.device_id == device)
    return row.latest_run_id, row.latest_p50_ms and round(row.latest_p50_ms)


def test_an_identical_duplicate_is_skipped_without_a_dead_letter(clocked: SqlStore) -> None:
    first = result("pi-01", 1)
    assert clocked.add_results([first]) == 1
    again = first.model_copy(update={"replayed": True})  # what an agent's re-send changes
    assert clocked.add_results([again, first]) == 0
    assert clocked.list_results() == [first]
    assert clocked.count_dead_letters() == []


def test_a_conflicting_duplicate_from_another_device_is_dead_lettered_and_moves_no_series(
        clocked: SqlStore) -> None:
    victim = result("pi-01", 1, p50_ms=2.0)
    clocked.add_results([victim])
    before = series_rows(clocked)
    forged = result("pi-02", 30, p50_ms=9.0).model_copy(update={"run_id": victim.run_id})
    assert clocked.add_results([forged], topics=["edgemeter/v1/default/pi-02/result"]) == 0
    assert clocked.list_results() == [victim]
    assert series_rows(clocked) == before  # pi-02 gets no series pointing at pi-01's run
    assert "pi-02" not in {d.device_id for d in clocked.list_devices()}
    [(reason, letters, _)] = clocked.count_dead_letters()
    assert reason.startswith(f"conflicting duplicate of run_id {victim.run_id}")
    assert letters == 1
    [letter] = clocked.list_dead_letters()
    assert (letter.device_id, letter.topic) == ("pi-02", "edgemeter/v1/default/pi-02/result")


def test_a_conflicting_duplicate_does_not_rewrite_the_devices_latest_result(
        clocked: SqlStore) -> None:
    first = result("pi-01", 1, p50_ms=2.0)
    clocked.add_results([first])
    changed = result("pi-01", 50, p50_ms=80.0).model_copy(update={"run_id": first.run_id})
    other = result("pi-01", 2, p50_ms=3.0)
    assert clocked.add_results([changed, other]) == 1
    assert latest(clocked, "pi-01") == (str(other.run_id), 3)
    assert {r.run_id for r in clocked.list_results()} == {first.run_id, other.run_id}
    assert clocked.get_result(str(first.run_id)) == first
    assert len(clocked.list_dead_letters()) == 1


def test_within_one_batch_the_first_of_two_conflicting_results_is_kept(clocked: SqlStore) -> None:
    first = result("pi-01", 1, p50_ms=2.0)
    second = result("pi-01", 2, p50_ms=7.0).model_copy(update={"run_id": first.run_id})
    assert clocked.add_results([first, second]) == 1
    assert clocked.list_results() == [first]
    assert latest(clocked, "pi-01") == (str(first.run_id), 2)
    [(reason, _, _)] = clocked.count_dead_letters()
    assert reason.startswith("conflicting duplicate of run_id")
