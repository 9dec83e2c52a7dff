"""Schema migrations (Alembic): adopting databases made before Alembic, refusing newer ones,
keeping the revisions and ``tables.py`` in agreement, and ``edgemeter collector migrate``.

Every test runs on SQLite and on the real PostgreSQL. The pre-Alembic databases are built with
the old runner's own SQL, copied into ``fixtures/pre_alembic_v1.<dialect>.sql``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from collector import commands
from collector.errors import StoreError
from collector.records import CitedBaseline
from collector.stores.base import ResultFilter, Store, open_store
from collector.stores.schema import SchemaChange, current_revision, head_revision
from collector.stores.sql import SqlStore
from collector.stores.tables import exists_on, metadata
from collector.stores.tables import results as results_table
from shared.errors import EdgemeterError
from shared.schema import BenchmarkResult, Scenario
from tests.factories import make_result

FIXTURES = Path(__file__).parent / "fixtures"
OLD_COLUMNS = ("run_id", "device_id", "fleet", "role", "created_at", "model_name", "model_sha256",
               "network", "scenario", "seq", "received_at", "topic", "result")


def dialect_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def old_statements(dialect: str) -> list[str]:
    body = "\n".join(line for line in (FIXTURES / f"pre_alembic_v1.{dialect}.sql")
                     .read_text().splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip()]


def run_raw(url: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Run SQL with the bare driver, as the pre-Alembic stores did (no SQLAlchemy)."""
    if dialect_of(url) == "sqlite":
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path)
        try:
            for sql, args in statements:
                conn.execute(sql, tuple(args))
            conn.commit()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            for sql, args in statements:
                pg.execute(sql.replace("?", "%s"), tuple(args))  # type: ignore[arg-type]


def old_version_row(url: str, version: int) -> tuple[str, Sequence[Any]]:
    """The old runner's record of having applied ``version``."""
    if dialect_of(url) == "sqlite":
        return ("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (version, f"v{version}", old_utc_text(datetime.now(timezone.utc))))
    return ("INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
            (version, f"v{version}"))


def old_utc_text(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def build_old_database(url: str, results: Sequence[BenchmarkResult], topic: str,
                       baseline: CitedBaseline, letter: bytes) -> None:
    """A database exactly as the pre-Alembic code left it, holding ``results`` and one of each."""
    dialect = dialect_of(url)
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    when: Any = old_utc_text(now) if dialect == "sqlite" else now
    json_param = "?" if dialect == "sqlite" else "?::jsonb"
    insert_result = (f"INSERT INTO results ({', '.join(OLD_COLUMNS)}) VALUES "
                     f"({', '.join(json_param if c == 'result' else '?' for c in OLD_COLUMNS)}) "
                     "ON CONFLICT (run_id) DO NOTHING")
    statements: list[tuple[str, Sequence[Any]]] = [(s, ()) for s in old_statements(dialect)]
    for r in results:
        created: Any = old_utc_text(r.created_at) if dialect == "sqlite" else r.created_at
        statements.append((insert_result, (
            str(r.run_id), r.device_id, r.fleet, r.role.value, created, r.model.name,
            r.model.sha256, r.model.network, r.spec.effective.scenario.value, r.seq, when, topic,
            r.model_dump_json())))
    statements.append(("INSERT INTO dead_letters (received_at, topic, reason, payload) "
                       "VALUES (?, ?, ?, ?)", (when, topic, "payload is not JSON", letter)))
    statements.append((
        "INSERT INTO cited_baselines (baseline_id, network, scenario, added_at, baseline) "
        f"VALUES (?, ?, ?, ?, {json_param}) ON CONFLICT (baseline_id) DO NOTHING",
        (baseline.baseline_id, baseline.network, baseline.scenario.value, when,
         json.dumps(baseline.model_dump(mode="json")))))
    run_raw(url, statements)


def engine_of(store: Store) -> Engine:
    assert isinstance(store, SqlStore)
    return store.engine


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would change to reach ``tables.py`` (empty: they agree).

    SQLite cannot rename a constraint, and the pre-Alembic runner declared its UNIQUE columns
    inline, unnamed: such a constraint on the same column counts as the named one of ``tables.py``
    (a later revision that alters it passes the naming convention to ``batch_alter_table``, which
    names it alike). PostgreSQL's month partitions of ``results`` are the parent's storage, not
    tables of their own, and are left out; so is what ``tables.py`` marks as existing on the other
    database only (:func:`collector.stores.tables.exists_on`).
    """
    dialect = engine.dialect.name
    with engine.connect() as conn:
        skipped = partitions(conn)

        def include(item: Any, name: str | None, type_: str, reflected: bool, _other: Any) -> bool:
            if type_ == "table" and name in skipped:
                return False
            return reflected or exists_on(item, dialect)

        context = MigrationContext.configure(conn, opts={"include_object": include})
        diffs = list(compare_metadata(context, metadata))
        inspector = inspect(conn)

        def unnamed_alike(diff: Any) -> bool:
            if diff[0] != "add_constraint" or engine.dialect.name != "sqlite":
                return False
            wanted = [c.name for c in diff[1].columns]
            return any(uq["name"] is None and uq["column_names"] == wanted
                       for uq in inspector.get_unique_constraints(diff[1].table.name))

        return [d for d in diffs if not unnamed_alike(d)]


def partitions(conn: Any) -> set[str]:
    """The names of partitions (PostgreSQL's children of partitioned tables); none on SQLite."""
    if conn.dialect.name != "postgresql":
        return set()
    return set(conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid")).scalars())


def test_a_database_made_before_alembic_upgrades_in_place_keeping_its_rows(store_url: str) -> None:
    topic = "edgemeter/v1/default/pi-01/result"
    old = [make_result(device_id=f"pi-0{i % 2}", seq=i,
                       created_at=datetime(2026, 1, 1, 0, i, tzinfo=timezone.utc))
           for i in range(5)]
    baseline = CitedBaseline(network="resnet50", hardware="NVIDIA A100", scenario=Scenario.OFFLINE,
                             throughput_sps=30_000.0, source="MLPerf Inference v4.0, 4.0-0001")
    letter = bytes(range(256))
    build_old_database(store_url, old, topic, baseline, letter)

    store = open_store(store_url)
    try:
        assert store.list_results() == old
        assert store.list_results(ResultFilter(device_id="pi-01", limit=1)) == [old[3]]
        assert store.get_result(str(old[2].run_id)) == old[2]
        [dead] = store.list_dead_letters()
        assert dead.payload == letter and dead.topic == topic
        assert dead.received_at == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
        assert store.list_cited_baselines() == [baseline]
        # the adopted table goes on: known run_ids are still skipped, new rows sort after old ones
        assert store.add_results(old) == 0
        assert store.add_cited_baselines([baseline]) == 0
        newer = make_result(created_at=old[-1].created_at)
        assert store.add_results([newer]) == 1
        assert store.list_results()[-2:] == [old[-1], newer]
        engine = engine_of(store)
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            assert conn.execute(select(results_table.c.topic).distinct()).scalars().all() \
                in ([topic, None], [None, topic])
        assert not inspect(engine).has_table("schema_migrations")
        assert schema_differences(engine) == []
    finally:
        store.close()


def test_a_new_database_has_exactly_the_tables_of_tables_py(store: Store) -> None:
    assert schema_differences(engine_of(store)) == []
    with engine_of(store).connect() as conn:
        tables = set(inspect(conn).get_table_names()) - partitions(conn)
    assert tables == {"alembic_version", *(name for name, table in metadata.tables.items()
                                           if exists_on(table, engine_of(store).dialect.name))}


def test_old_dead_letters_stay_readable_and_repeats_merge_per_device(store_url: str) -> None:
    topic = "edgemeter/v1/default/pi-01/result"
    letter = bytes(range(256)) * 300  # over 64 KiB: an old payload is kept whole
    build_old_database(store_url, [], topic,
                       CitedBaseline(network="n", hardware="h", scenario=Scenario.OFFLINE,
                                     source="a source"), letter)
    later = datetime(2026, 1, 3, tzinfo=timezone.utc)
    when: Any = old_utc_text(later) if dialect_of(store_url) == "sqlite" else later
    insert = "INSERT INTO dead_letters (received_at, topic, reason, payload) VALUES (?, ?, ?, ?)"
    run_raw(store_url, [(insert, (when, topic, "payload is not JSON", letter)),
                        (insert, (when, "stray/topic", "not an edgemeter topic", letter))])
    store = open_store(store_url)
    try:
        first, stray = store.list_dead_letters()
        assert (first.device_id, first.count, first.payload, first.size_bytes) == (
            "pi-01", 2, letter, len(letter))
        assert first.received_at == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
        assert first.last_seen == later and not first.truncated
        assert (stray.device_id, stray.count, stray.topic) == (None, 1, "stray/topic")
        store.add_dead_letter(topic, "payload is not JSON", letter, device_id="pi-01")
        assert [d.count for d in store.list_dead_letters()] == [3, 1]
        assert schema_differences(engine_of(store)) == []
    finally:
        store.close()


def test_an_empty_version_table_of_the_old_runner_is_a_new_database(store_url: str) -> None:
    run_raw(store_url, [(old_statements(dialect_of(store_url))[0], ())])  # CREATE TABLE only
    store = open_store(store_url)
    try:
        assert store.add_results([make_result()]) == 1
        assert schema_differences(engine_of(store)) == []
    finally:
        store.close()


def test_an_old_runner_version_newer_than_known_is_refused(store_url: str) -> None:
    statements = old_statements(dialect_of(store_url))
    run_raw(store_url, [(statements[0], ()), old_version_row(store_url, 2)])
    with pytest.raises(StoreError, match=r"version 2 of the pre-Alembic runner.*upgrade edgemeter"):
        open_store(store_url)


def test_a_revision_this_edgemeter_does_not_know_is_refused(store: Store, store_url: str) -> None:
    with engine_of(store).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    store.close()
    with pytest.raises(StoreError, match="schema revision ffff, newer than this edgemeter knows"):
        open_store(store_url)


def test_a_refused_database_is_left_as_it_was(store_url: str) -> None:
    statements = old_statements(dialect_of(store_url))
    run_raw(store_url, [(s, ()) for s in statements[:-1]]
            + [old_version_row(store_url, 1), old_version_row(store_url, 7)])
    with pytest.raises(StoreError, match="upgrade edgemeter"):
        open_store(store_url)
    store = open_store(store_url, migrate=False)
    try:
        tables = set(inspect(engine_of(store)).get_table_names())
        assert "schema_migrations" in tables and "alembic_version" not in tables
    finally:
        store.close()


def test_collectors_starting_together_migrate_once(store_url: str) -> None:
    run_raw(store_url, [])  # the SQLite folder
    barrier = threading.Barrier(3)
    changes: list[SchemaChange] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            store = open_store(store_url, migrate=False)
            try:
                barrier.wait()
                changes.append(store.migrate())
            finally:
                store.close()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(c.changed for c in changes) == [False, False, True]


# -- edgemeter collector migrate ----------------------------------------------------------------


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="edgemeter")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    try:
        code = int(args.func(args) or 0)
    except EdgemeterError as err:
        print(f"edgemeter: error: {err}", file=sys.stderr)
        code = 2
    out, err = capsys.readouterr()
    return code, out, err


def test_collector_migrate_upgrades_then_says_it_is_current(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build_old_database(store_url, [make_result()], "t",
                       CitedBaseline(network="n", hardware="h", scenario=Scenario.OFFLINE,
                                     source="a source"), b"")
    code, out, _ = run_cli(["collector", "migrate", "--db", store_url], capsys)
    assert code == 0
    assert f"migrated from no revision to revision {head_revision()}" in out
    code, out, _ = run_cli(["collector", "migrate", "--db", store_url], capsys)
    assert code == 0 and f"already at revision {head_revision()}" in out
    store = open_store(store_url)
    try:
        assert len(store.list_results()) == 1
    finally:
        store.close()


def test_collector_migrate_refusal_is_one_line(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_raw(store_url, [(old_statements(dialect_of(store_url))[0], ()),
                        old_version_row(store_url, 5)])
    code, out, err = run_cli(["collector", "migrate", "--db", store_url], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "upgrade edgemeter" in err


# -- r0004: series ------------------------------------------------------------------------------


def database_at_revision(url: str, revision: str) -> None:
    """An empty database brought to ``revision`` by the shipped scripts, as that edgemeter did."""
    from alembic import command

    from collector.stores.dialects import database_for
    from collector.stores.schema import alembic_config

    database = database_for(url)
    try:
        with database.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        database.engine.dispose()


def test_a_database_at_r0003_upgrades_with_each_series_newest_result(store_url: str) -> None:
    from sqlalchemy import insert

    from collector.stores.tables import series
    from shared.schema import DeviceManifest, RunSpec, RunSpecPair

    def run(device: str, minute: int, model: str = "vww.tflite", hardware: str | None = None,
            scenario: Scenario = Scenario.SINGLE_STREAM) -> BenchmarkResult:
        return make_result(device_id=device, model_name=model, seq=minute,
                           created_at=datetime(2026, 1, 1, 0, minute, tzinfo=timezone.utc),
                           device=DeviceManifest(hostname=device, cpu_model="A76", cpu_cores=4,
                                                 hardware_key=hardware),
                           spec=RunSpecPair(requested=RunSpec(scenario=scenario),
                                            effective=RunSpec(scenario=scenario)))

    tie_a, tie_b = run("pi-02", 7), run("pi-02", 7)
    newest = {
        "pi-01 vww": run("pi-01", 9, hardware="raspberry-pi-5"),
        "pi-01 kws": run("pi-01", 3, model="kws.tflite"),
        "pi-01 vww offline": run("pi-01", 2, scenario=Scenario.OFFLINE),
        "pi-02 vww": max(tie_a, tie_b, key=lambda r: str(r.run_id)),
    }
    older = [run("pi-01", 1, hardware="raspberry-pi-4"), run("pi-01", 8), run("pi-01", 0,
             model="kws.tflite"), min(tie_a, tie_b, key=lambda r: str(r.run_id))]
    database_at_revision(store_url, "0003")
    stored = [*older, *newest.values()]
    rows = [{"run_id": str(r.run_id), "device_id": r.device_id, "fleet": r.fleet,
             "role": r.role.value, "created_at": r.created_at, "model_name": r.model.name,
             "model_sha256": r.model.sha256, "network": r.model.network,
             "scenario": r.spec.effective.scenario.value, "seq": r.seq,
             "received_at": r.created_at, "topic": None, "result": r.model_dump_json()}
            for r in stored]
    probe = open_store(store_url, migrate=False)
    try:
        with engine_of(probe).begin() as conn:
            assert current_revision(conn) == "0003"
            conn.execute(insert(results_table), rows)
    finally:
        probe.close()

    store = open_store(store_url)
    try:
        with engine_of(store).connect() as conn:
            assert current_revision(conn) == head_revision()
            got = {(s.device_id, s.model_sha256, s.scenario): s
                   for s in conn.execute(select(series))}
        assert len(got) == len(newest)
        for r in newest.values():
            s = got[(r.device_id, r.model.sha256, r.spec.effective.scenario.value)]
            assert (s.latest_run_id, s.latest_created_at, s.hardware_key, s.model_name,
                    s.network, s.role, s.fleet) == (
                str(r.run_id), r.created_at, r.device.hardware_key, r.model.name,
                r.model.network, "edge", "default")
        assert store.list_results(ResultFilter(newest_per_hardware=True)) == \
            sorted(newest.values(), key=lambda r: r.created_at)
        assert schema_differences(engine_of(store)) == []
    finally:
        store.close()
