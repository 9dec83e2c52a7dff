"""Monitor windows travel through the spool like results: kept until a receipt names them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agent.delivery import Courier
from agent.spool import Spool
from shared.messages import Receipt
from shared.payload import unpack
from tests.agent.test_spool import RecordingConn
from tests.factories import make_result
from tests.factories_monitor import make_window


def test_a_window_goes_out_on_the_monitor_topic_and_stays_until_its_receipt(tmp_path: Path
                                                                             ) -> None:
    spool = Spool(tmp_path / "spool.db")
    window = make_window()
    spool.put_window(window)
    spool.put(make_result())
    conn = RecordingConn()
    courier = Courier(spool)
    assert courier.send_due(conn) == 2
    topics = sorted(topic for topic, _ in conn.published)
    assert topics == ["edgemeter/v1/default/pi-01/monitor", "edgemeter/v1/default/pi-01/result"]
    assert spool.depth() == 2
    courier.on_receipt(Receipt(run_ids=[window.window_id]).model_dump_json().encode())
    assert spool.depth() == 1
    assert all(entry.kind == "result" for entry in spool.pending())


def test_a_resent_window_says_it_is_replayed(tmp_path: Path) -> None:
    now = [1000.0]
    spool = Spool(tmp_path / "spool.db", clock_s=lambda: now[0])
    spool.put_window(make_window())
    conn = RecordingConn()
    courier = Courier(spool, resend_after_s=10)
    courier.send_due(conn)
    now[0] += 11
    courier.send_due(conn)
    assert [json.loads(unpack(p))["replayed"] for _, p in conn.published] == [False, True]


def test_a_spool_of_the_layout_before_windows_gains_the_kind_column(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE results (run_id TEXT PRIMARY KEY, fleet TEXT NOT NULL,
            device_id TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,
            size_bytes INTEGER NOT NULL, created_s REAL NOT NULL, sent_s REAL,
            attempts INTEGER NOT NULL DEFAULT 0);
        INSERT INTO results VALUES ('r1', 'default', 'pi-01', 1, X'7B7D', 2, 1.0, NULL, 0);
    """)
    db.close()
    spool = Spool(path)
    assert [(e.run_id, e.kind) for e in spool.pending()] == [("r1", "result")]
