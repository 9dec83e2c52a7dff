"""Results by month: run_ids stored once across partitions, partitions made ahead and on demand
(PostgreSQL), the default partition's rows moved, pruning, and an old table upgraded in place."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from collector import commands
from collector.records import CitedBaseline
from collector.stores.base import open_store
from collector.stores.partitions import DEFAULT_PARTITION, months_from
from collector.stores.sql import SqlStore
from shared.schema import Scenario
from tests.collector.conftest import NOW
from tests.collector.test_migrations import build_old_database
from tests.factories import make_result


def where_rows_are(store: SqlStore) -> dict[str, int]:
    """Rows per partition of ``results`` (PostgreSQL)."""
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT tableoid::regclass::text, count(*) FROM results GROUP BY 1")).all()
    return {name.split(".")[-1]: n for name, n in rows}


def partition_names(store: SqlStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'results'::regclass")).scalars())


def postgres_only(store: SqlStore) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("partitions exist on PostgreSQL only")


def test_the_same_run_id_with_another_created_at_is_stored_once(clocked: SqlStore) -> None:
    first = make_result(created_at=datetime(2026, 1, 5, tzinfo=timezone.utc))
    resent = first.model_copy(update={"created_at": datetime(2026, 3, 5, tzinfo=timezone.utc)})
    assert clocked.add_results([first]) == 1
    assert clocked.add_results([resent, resent]) == 0
    assert clocked.add_results([make_result(), resent, make_result()]) == 2
    assert [r.created_at for r in clocked.list_results() if r.run_id == first.run_id] == [
        first.created_at]
    assert clocked.get_result(str(first.run_id)) == first


def test_twins_in_one_batch_in_different_months_are_stored_once(clocked: SqlStore) -> None:
    a = make_result(created_at=datetime(2025, 12, 31, 23, 59, tzinfo=timezone.utc))
    b = a.model_copy(update={"created_at": datetime(2026, 1, 1, tzinfo=timezone.utc)})
    assert clocked.add_results([a, b]) == 1
    assert clocked.list_results() == [a]


def test_this_month_and_the_next_two_are_made_when_the_store_opens(clocked: SqlStore) -> None:
    postgres_only(clocked)
    assert {"results_y2026m03", "results_y2026m04", "results_y2026m05",
            DEFAULT_PARTITION} <= partition_names(clocked)


def test_a_result_in_a_month_without_a_partition_gets_one(clocked: SqlStore) -> None:
    postgres_only(clocked)
    clocked.add_results([make_result(created_at=datetime(2024, 7, 9, tzinfo=timezone.utc))])
    assert where_rows_are(clocked) == {"results_y2024m07": 1}


def test_rows_waiting_in_the_default_partition_move_into_their_new_month(
    clocked: SqlStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres_only(clocked)
    july = [make_result(seq=i, created_at=datetime(2024, 7, 9, i, tzinfo=timezone.utc))
            for i in range(3)]
    monkeypatch.setattr(clocked._partitions, "enabled", False)  # as if making it had failed
    clocked.add_results(july[:2])
    assert where_rows_are(clocked) == {DEFAULT_PARTITION: 2}
    monkeypatch.setattr(clocked._partitions, "enabled", True)
    clocked.add_results(july[2:])
    assert where_rows_are(clocked) == {"results_y2024m07": 3}
    assert clocked.list_results() == july
    assert clocked.add_results(july) == 0


def test_prune_drops_whole_old_months_on_postgresql_and_rows_on_sqlite(
    clocked: SqlStore,
) -> None:
    days = [200, 80, 40, 1]  # before NOW
    rows = [make_result(seq=i, created_at=NOW - timedelta(days=d)) for i, d in enumerate(days)]
    clocked.add_results(rows)
    outcome = clocked.prune(older_than_days=60)
    kept = [r.seq for r in clocked.list_results()]
    if clocked.engine.dialect.name == "postgresql":
        # cutoff 2026-01-14: August and December 2025 are wholly older; January 2026 is not
        assert outcome.partitions_dropped == ("results_y2025m08", "results_y2025m12")
        assert kept == [2, 3]
    else:
        assert kept == [2, 3] and outcome.partitions_dropped == ()
    assert outcome.results_deleted == 2
    assert clocked.add_results([rows[0]]) == 1  # its run_id left result_ids with it


def test_prune_on_postgresql_deletes_old_rows_from_the_default_partition(
    clocked: SqlStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres_only(clocked)
    monkeypatch.setattr(clocked._partitions, "enabled", False)
    clocked.add_results([make_result(seq=0, created_at=NOW - timedelta(days=100)),
                         make_result(seq=1, created_at=NOW - timedelta(days=10))])
    assert clocked.prune(older_than_days=60).results_deleted == 1
    assert [r.seq for r in clocked.list_results()] == [1]


def test_an_unpartitioned_database_upgrades_in_place_into_month_partitions(
    store_url: str,
) -> None:
    old = [make_result(seq=i, created_at=datetime(2026, 1 + i % 2, 3, i, tzinfo=timezone.utc))
           for i in range(6)]
    build_old_database(store_url, old, "t", CitedBaseline(
        network="n", hardware="h", scenario=Scenario.OFFLINE, source="a source"), b"")
    store = open_store(store_url)
    try:
        assert isinstance(store, SqlStore)
        assert store.list_results() == sorted(old, key=lambda r: r.created_at)
        assert store.add_results(old) == 0
        newest = make_result(seq=9)
        assert store.add_results([newest]) == 1
        assert store.get_result(str(newest.run_id)) == newest
        if store.engine.dialect.name == "postgresql":
            counts = where_rows_are(store)
            assert counts["results_y2026m01"] == 3 and counts["results_y2026m02"] == 3
            with store.engine.connect() as conn:  # ids go on after the copied ones
                ids = conn.execute(text("SELECT id FROM results ORDER BY id")).scalars().all()
            assert ids == sorted(set(ids)) and len(ids) == 7
    finally:
        store.close()


def test_months_roll_over_the_year() -> None:
    assert months_from((2026, 11), 3) == [(2026, 11), (2026, 12), (2027, 1)]


def test_collector_prune_command_says_what_went(
    sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    store = open_store(sqlite_url)
    try:
        store.add_results([make_result(created_at=datetime(2020, 1, 2, tzinfo=timezone.utc)),
                           make_result()])
    finally:
        store.close()
    parser = argparse.ArgumentParser(prog="edgemeter")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["collector", "prune", "--older-than", "365", "--db", sqlite_url])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith("pruned 1 results created before ")


def test_two_stores_adding_the_same_run_ids_at_once_store_each_once(store_url: str) -> None:
    import threading

    shared = [make_result(device_id=f"pi-{i % 3}", seq=i) for i in range(60)]
    stores = [open_store(store_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    added: list[int] = []
    errors: list[BaseException] = []

    def add(store: object, order: list[object]) -> None:
        try:
            barrier.wait()
            added.append(store.add_results(order))  # type: ignore[attr-defined]
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=add, args=(stores[0], shared)),
               threading.Thread(target=add, args=(stores[1], shared[::-1]))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sum(added) == len(shared)
        assert len(stores[0].list_results()) == len(shared)
    finally:
        for store in stores:
            store.close()
