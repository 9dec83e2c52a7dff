"""The disk under the spool fills up: the oldest results are dropped and counted, new ones kept,
and a clear error when nothing can make room; what is kept is then delivered, each once.

The disk is real: a 4 MiB tmpfs mounted for the test (``mount -t tmpfs -o size=4m``; tests run
as root here), so SQLite meets a real ENOSPC (``database or disk is full``). Without the right to
mount, the test skips (fails under CI=true).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import SpoolError
from agent.spool import Spool
from collector.config import IngestSettings, MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from tests.conftest import unavailable
from tests.factories import make_result
from tests.reliability.services import (
    FLEET,
    PersistentMosquitto,
    agent_settings,
    make_daemon,
    report,
    wait_until,
)

pytestmark = [pytest.mark.slow]

DISK = "4m"
RESULTS = 2500  # about 2 KiB each: 5 MiB for a 4 MiB disk


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs",
                           str(mount_point)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        unavailable(f"cannot mount a {DISK} tmpfs for a full disk: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_drops_the_oldest_counts_them_and_keeps_taking_new_results(
    small_disk: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.spool")
    results = [make_result(seq=seq) for seq in range(1, RESULTS + 1)]
    with Spool(small_disk / "spool.db") as spool:
        for result in results:
            spool.put(result)  # never raises while older results can make room
        kept = {e.run_id for e in spool.pending()}
        dropped = spool.dropped_total
    assert kept == {str(r.run_id) for r in results[-len(kept):]}, "kept is not the newest"
    assert dropped > 0 and len(kept) + dropped == RESULTS, (len(kept), dropped)
    assert "the disk is full" in caplog.text
    print(f"{RESULTS} results on a {DISK} disk: {len(kept)} kept, {dropped} oldest dropped "
          "and counted")


def test_a_full_disk_with_nothing_to_drop_is_a_one_line_error_naming_the_spool(
    small_disk: Path,
) -> None:
    spool = Spool(small_disk / "spool.db", reserve_bytes=0)
    try:
        filler = small_disk / "filler"
        with filler.open("wb") as out, pytest.raises(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        result = make_result()
        with pytest.raises(SpoolError) as refused:
            spool.put(result)
    finally:
        spool.close()
    message = str(refused.value)
    assert "\n" not in message
    assert str(small_disk / "spool.db") in message and "is full" in message
    assert str(result.run_id) in message, "the message says which run was not kept"


@pytest.mark.mqtt
def test_what_a_full_disk_kept_is_delivered_each_once(small_disk: Path, tmp_path: Path) -> None:
    device = f"board-{uuid.uuid4().hex[:6]}"
    broker = PersistentMosquitto(tmp_path / "broker").start()
    settings = agent_settings(device, small_disk, broker_url=broker.url)
    spool = Spool(settings.spool.path)
    for seq in range(1, RESULTS + 1):
        spool.put(make_result(device_id=device, fleet=FLEET, seq=seq))
    dropped = spool.dropped_total
    kept = [e.run_id for e in spool.pending()]
    assert dropped > 0, "the disk never filled"
    db_url = f"sqlite:///{tmp_path}/results.db"
    store = open_store(db_url)
    collector = CollectorService(store, MqttSettings(url=broker.url, client_id="rel-disk-full",
                                                     connect_timeout_s=10), IngestSettings())
    daemon = make_daemon(settings, spool)
    stop = threading.Event()
    agent = threading.Thread(target=daemon.run_forever, args=(stop, 0.05), daemon=True)
    collector.start()
    agent.start()
    try:
        wait_until(lambda: spool.depth() == 0, 120, "every kept result receipted")
    finally:
        stop.set()
        agent.join(20)
        spool.close()
        collector.stop()
        store.close()
        broker.stop()
    report(kept, db_url, note=f"spool on a full {DISK} disk; {dropped} oldest dropped and counted")
