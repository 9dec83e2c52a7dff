"""kill -9 of ``edgemeter agent run`` with results in its spool, then a restart: all arrive.

The daemon first sends its spool to a broker no collector subscribes to yet, so every message it
was told arrived (PUBACK) goes nowhere; then it is killed with SIGKILL. The results are still in
the spool on disk (a result leaves it only on a receipt). Once a collector listens and the daemon
is started again, it sends them again (``resend_after_s``) and each is stored once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agent.spool import Spool
from collector.config import IngestSettings, MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from tests.factories import make_result
from tests.reliability.services import FLEET, PersistentMosquitto, report, wait_until

REPO = Path(__file__).resolve().parents[2]
RESULTS = 200
RESEND_AFTER_S = 2


def start_daemon(broker_url: str, device: str, state: Path) -> subprocess.Popen[bytes]:
    config = state / "agent.toml"
    config.write_text(
        f'device_id = "{device}"\nfleet = "{FLEET}"\ntelemetry_s = 60\n'
        f'[mqtt]\nurl = "{broker_url}"\nkeepalive_s = 5\n'
        f'[spool]\npath = "{state / "spool.db"}"\nresend_after_s = {RESEND_AFTER_S}\n'
        f'[models]\ncache_dir = "{state / "models"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
    env["XDG_STATE_HOME"] = str(state / "xdg")  # no outbox of this machine's user is imported
    with (state / "agent.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "edgemeter.cli", "-v", "agent", "run",
                                 "--config", str(config)], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def test_results_never_sent_go_before_re_sends_so_a_big_spool_does_not_starve_its_newest(
    tmp_path: Path,
) -> None:
    # Found by the kill test below: ordered by age alone, the oldest unreceipted results were
    # re-sent every resend_after_s and a spool deeper than max_per_tick x resend_after_s never
    # sent its newest results at all while no receipt came.
    now = [1000.0]
    with Spool(tmp_path / "spool.db", clock_s=lambda: now[0]) as spool:
        results = [make_result(seq=seq) for seq in range(1, 5)]
        for result in results:
            spool.put(result)
        first = spool.due(resend_after_s=2, limit=2)
        spool.mark_sent(e.run_id for e in first)
        now[0] += 10  # the first two are due again, the last two were never sent
        due = spool.due(resend_after_s=2, limit=2)
    assert [e.run_id for e in due] == [str(r.run_id) for r in results[2:]]


@pytest.mark.mqtt
@pytest.mark.slow
def test_an_agent_killed_with_results_in_its_spool_delivers_them_all_after_a_restart(
    tmp_path: Path,
) -> None:
    broker = PersistentMosquitto(tmp_path / "broker").start()
    device = f"board-{uuid.uuid4().hex[:6]}"
    state = tmp_path / device
    state.mkdir()
    spool_path = state / "spool.db"
    with Spool(spool_path) as spool:
        sent = [make_result(device_id=device, fleet=FLEET, seq=seq) for seq in range(1, RESULTS + 1)]
        for result in sent:
            spool.put(result)
    watcher = Spool(spool_path)  # a second reader of the same file, as a person would look
    db_url = f"sqlite:///{tmp_path}/results.db"
    store = open_store(db_url)
    collector = CollectorService(store, MqttSettings(url=broker.url, client_id="rel-agent-kill",
                                                     connect_timeout_s=10), IngestSettings())
    daemon = start_daemon(broker.url, device, state)
    try:
        wait_until(lambda: all(e.attempts > 0 for e in watcher.pending()), 60,
                   "the daemon to send its whole spool (to nobody)")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        assert watcher.depth() == RESULTS, "a killed daemon lost results from its spool"
        collector.start()
        daemon = start_daemon(broker.url, device, state)
        wait_until(lambda: watcher.depth() == 0, 90, "every result receipted")
        wait_until(lambda: collector.stats["stored"] >= RESULTS, 30, f"{RESULTS} stored")
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait(20)
        collector.stop()
        store.close()
        watcher.close()
        broker.stop()
    report([str(r.run_id) for r in sent], db_url,
           note=f"agent killed with {RESULTS} sent and unreceipted")
