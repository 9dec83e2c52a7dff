"""The store suite: every test runs through the one SQL store on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from collector.errors import StoreError
from collector.records import CitedBaseline
from collector.stores import sql
from collector.stores.base import STORES, ResultFilter, Store, open_store
from collector.stores.schema import SchemaChange, current_revision, head_revision
from collector.stores.sql import SqlStore
from collector.stores.tables import results as results_table
from shared.errors import ConfigError, MissingExtraError
from shared.schema import EnergyReport, PowerScope, Scenario
from tests.factories import make_result

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def engine_of(store: Store) -> Engine:
    assert isinstance(store, SqlStore)
    return store.engine


def revision_of(store: Store) -> str | None:
    with engine_of(store).connect() as conn:
        return current_revision(conn)


def test_migrate_twice_is_a_noop_and_data_survives_reopen(store: Store, store_url: str) -> None:
    result = make_result()
    store.add_results([result])
    head = head_revision()
    assert store.migrate() == SchemaChange(head, head)
    assert not store.migrate().changed
    assert revision_of(store) == head
    reopened = open_store(store_url)
    try:
        assert reopened.list_results() == [result]
        assert revision_of(reopened) == head
    finally:
        reopened.close()


def test_round_trip_equals_the_original_model(store: Store) -> None:
    plain = make_result(created_at=at(0))
    rich = make_result(
        created_at=at(1),
        model_name="modèle_ü_量子.onnx",
        labels={"site": "lab ✓", "empty": ""},
        energy=EnergyReport(source="ina3221", scope=PowerScope.BOARD, estimated=False,
                            avg_power_w=4.25, energy_j=1e-7, joules_per_inference=3.3e-300),
        throughput_sps=1e300,
        seq=2**63 - 1,
    )
    assert store.add_results([plain, rich]) == 2
    assert store.list_results() == [plain, rich]
    assert store.get_result(str(rich.run_id)) == rich
    assert store.get_result(str(uuid.uuid4())) is None


def test_duplicate_run_id_is_stored_once(store: Store) -> None:
    first = make_result()
    assert store.add_results([first]) == 1
    assert store.add_results([first, make_result()]) == 1
    twin = make_result()
    assert store.add_results([twin, twin]) == 1
    assert len(store.list_results()) == 3


def test_results_come_oldest_first_then_in_received_order(store: Store) -> None:
    late, early = make_result(created_at=at(10)), make_result(created_at=at(1))
    tie_a, tie_b = make_result(created_at=at(5)), make_result(created_at=at(5))
    store.add_results([late, tie_a])
    store.add_results([early, tie_b])
    assert store.list_results() == [early, tie_a, tie_b, late]


def test_filters_by_model_device_role_fleet_and_limit(store: Store) -> None:
    a = make_result(device_id="pi-01", model_name="vww_96_int8.tflite", network="vww_96",
                    created_at=at(1))
    b = make_result(device_id="pi-02", model_name="vww_96_int8.onnx", network="vww_96",
                    created_at=at(2))
    c = make_result(device_id="dc-01", role="datacenter", fleet="lab",
                    model_name="resnet50_int8.onnx", network="resnet50", created_at=at(3))
    store.add_results([c, b, a])

    def ids(**kw: Any) -> list[str]:
        return [r.device_id for r in store.list_results(ResultFilter(**kw))]

    assert ids() == ["pi-01", "pi-02", "dc-01"]
    assert ids(model="vww_96") == ["pi-01", "pi-02"]  # network
    assert ids(model="vww_96_int8.onnx") == ["pi-02"]  # file name
    assert ids(model=c.model.sha256) == ["dc-01"]  # sha256
    assert ids(device_id="pi-02") == ["pi-02"]
    assert ids(role="datacenter") == ["dc-01"]
    assert ids(role="edge", fleet="default") == ["pi-01", "pi-02"]
    assert ids(fleet="lab") == ["dc-01"]
    assert ids(limit=2) == ["pi-02", "dc-01"]  # the newest two, still oldest first
    assert ids(model="vww_96", limit=1) == ["pi-02"]
    assert ids(model="nope") == []


def test_dead_letters_keep_the_raw_bytes(store: Store) -> None:
    raw = bytes(range(256)) + b"\x00\xff" * 10
    store.add_dead_letter("edgemeter/v1/default/pi-01/result", "payload is not UTF-8", raw)
    store.add_dead_letter("edgemeter/v1/default/pi-02/result", "second", b"")
    letters = store.list_dead_letters()
    assert [d.payload for d in letters] == [raw, b""]
    assert letters[0].reason == "payload is not UTF-8"
    assert letters[0].topic == "edgemeter/v1/default/pi-01/result"
    assert letters[0].received_at.tzinfo is not None
    assert abs(letters[0].received_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert [d.reason for d in store.list_dead_letters(limit=1)] == ["second"]


def test_cited_baselines_dedupe_by_content(store: Store) -> None:
    row = CitedBaseline(network="resnet50", hardware="NVIDIA A100", scenario=Scenario.OFFLINE,
                        throughput_sps=30_000.0, source="MLPerf Inference v4.0, 4.0-0001")
    other = row.model_copy(update={"throughput_sps": 31_000.0})
    assert store.add_cited_baselines([row, row]) == 1
    assert store.add_cited_baselines([row, other]) == 1
    assert store.list_cited_baselines() == [row, other]


def test_batch_of_500_inserts_in_one_call(store: Store) -> None:
    # how fast: bench/store_ingest.py
    results = [make_result(seq=i) for i in range(500)]
    assert store.add_results(results) == 500
    assert store.add_results(results) == 0
    assert len(store.list_results()) == 500
    with engine_of(store).connect() as conn:
        assert conn.execute(select(func.count()).select_from(results_table)).scalar() == 500


def test_topics_are_stored_with_their_results_and_must_match_in_number(store: Store) -> None:
    batch = [make_result(seq=0), make_result(seq=1)]
    assert store.add_results(batch, topics=["edgemeter/v1/default/pi-01/result", None]) == 2
    with engine_of(store).connect() as conn:
        topics = conn.execute(
            select(results_table.c.topic).order_by(results_table.c.seq)).scalars().all()
    assert topics == ["edgemeter/v1/default/pi-01/result", None]
    with pytest.raises(ValueError, match="2 topics for 1 results"):
        store.add_results([make_result()], topics=["a", "b"])


def seq_gaps(engine: Engine, device_id: str) -> list[tuple[int, int]]:
    """Missing ``seq`` ranges of one device, as inclusive ``(first, last)`` pairs."""
    seq = results_table.c.seq
    ordered = select(seq, func.lag(seq).over(order_by=seq).label("prev")).where(
        results_table.c.device_id == device_id).subquery()
    query = select(ordered.c.prev + 1, ordered.c.seq - 1).where(
        ordered.c.seq - ordered.c.prev > 1).order_by(ordered.c.seq)
    with engine.connect() as conn:
        return [(int(a), int(b)) for a, b in conn.execute(query)]


def test_seq_gaps_can_be_found_from_device_and_seq(store: Store) -> None:
    store.add_results([make_result(seq=s) for s in (0, 1, 2, 5, 9, 10)])
    store.add_results([make_result(device_id="pi-02", seq=s) for s in (3, 4)])
    assert seq_gaps(engine_of(store), "pi-01") == [(3, 4), (6, 8)]
    assert seq_gaps(engine_of(store), "pi-02") == []


def test_iter_results_streams_what_list_results_returns(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "STREAM_BATCH_ROWS", 2)  # several fetches for a handful of rows
    store.add_results([make_result(device_id=f"pi-0{i % 2}", seq=i, created_at=at(i))
                       for i in range(7)])
    for flt in (None, ResultFilter(device_id="pi-01"), ResultFilter(limit=3),
                ResultFilter(model="nope")):
        assert list(store.iter_results(flt)) == store.list_results(flt)
    assert [r.seq for r in store.iter_results(ResultFilter(limit=3))] == [4, 5, 6]


def test_a_closed_store_refuses_calls(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_results()


# -- SQLite specifics ---------------------------------------------------------------------------


def test_sqlite_relative_url_creates_the_folder_and_uses_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data/sub/results.db")
    try:
        assert (tmp_path / "data" / "sub" / "results.db").is_file()
        with engine_of(store).connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        store.close()


def test_sqlite_in_memory_store_works(tmp_path: Path) -> None:
    store = open_store("sqlite:///:memory:")
    result = make_result()
    store.add_results([result])
    assert store.list_results() == [result]
    store.close()


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///", "mysql://x/y"])
def test_bad_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_sqlite_readers_work_while_one_thread_writes(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(20):
                store.add_results([make_result(seq=i * 10 + j) for j in range(10)])
        except BaseException as err:
            errors.append(err)

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while writer.is_alive():
        seen = max(seen, len(store.list_results()))
    writer.join()
    store.close()
    assert not errors
    reopened = open_store(sqlite_url)
    assert len(reopened.list_results()) == 200
    reopened.close()


def test_sqlite_two_stores_on_one_file_write_at_once_without_lock_errors(sqlite_url: str) -> None:
    # two collectors (two engines) on one file: BEGIN IMMEDIATE makes the second wait its turn
    stores = [open_store(sqlite_url), open_store(sqlite_url)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(store: Store, device: str) -> None:
        try:
            barrier.wait()
            for i in range(10):
                store.add_results([make_result(device_id=device, seq=i * 20 + j)
                                   for j in range(20)])
                store.list_results(ResultFilter(device_id=device, limit=1))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(s, f"pi-0{n}"))
               for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(stores[0].list_results()) == 400
    for s in stores:
        s.close()


def test_sqlite_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="check"):
        open_store(f"sqlite:///{blocker}/sub/results.db")


# -- PostgreSQL specifics -----------------------------------------------------------------------


def test_postgres_without_psycopg_asks_for_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtraError, match=r"pip install .*\[collector\]'"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


@pytest.mark.parametrize("missing", ["sqlalchemy", "alembic"])
def test_any_store_without_the_collector_extra_asks_for_it(
    missing: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(MissingExtraError, match=rf"'{missing}'.*pip install .*\[collector\]'"):
        open_store(f"sqlite:///{tmp_path}/results.db")
    assert not (tmp_path / "results.db").exists()


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg", "postgresql+psycopg2"])
def test_postgres_url_spellings_all_open_with_psycopg(scheme: str, postgres_url: str) -> None:
    store = open_store(scheme + postgres_url[postgres_url.index(":"):])
    try:
        assert engine_of(store).dialect.driver == "psycopg"
        assert store.add_results([make_result()]) == 1
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_url_keeps_no_password(postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:hunter2@", 1)
    store = open_store(with_password)  # the test server trusts local users
    try:
        assert "hunter2" not in store.url and "hunter2" not in repr(store)
        assert store.url.startswith("postgresql://postgres:***@")
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_reconnects_after_the_server_drops_the_connection(postgres_url: str) -> None:
    import psycopg

    store = open_store(postgres_url)
    try:
        first = make_result()
        store.add_results([first])
        with engine_of(store).connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with contextlib.suppress(StoreError):  # the call that meets the dead connection may fail
            store.list_results()
        second = make_result()
        assert store.add_results([second]) == 1
        assert store.list_results() == [first, second]
    finally:
        store.close()


def test_postgres_unreachable_is_a_one_line_store_error() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError) as info:
        open_store("postgresql://someone:secret@127.0.0.1:1/nowhere?connect_timeout=2")
    message = str(info.value)
    assert "\n" not in message
    assert "secret" not in message
    assert "someone@127.0.0.1:1/nowhere" in message
    assert "check that the server is running" in message


# -- registry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", sorted(STORES))
def test_every_registered_store_implements_the_protocol(scheme: str) -> None:
    module_name, _, cls_name = STORES[scheme].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    members = [
        name for name in dir(Store)
        if not name.startswith("_") and callable(getattr(Store, name, None))
    ]
    assert members, "the Protocol lists its methods"
    for name in members:
        assert callable(getattr(cls, name, None)), f"{cls_name} lacks {name}()"


@pytest.mark.subprocess
def test_importing_the_stores_imports_no_database_library() -> None:
    code = (
        "import sys, collector.stores, collector.service, collector.commands, collector.ingest; "
        "loaded = [m for m in ('psycopg', 'pyarrow', 'sqlalchemy', 'alembic') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///results.db", "results.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite+pysqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_url_forms(url: str, path: str) -> None:
    from collector.stores.dialects import sqlite_path

    assert sqlite_path(url) == path
