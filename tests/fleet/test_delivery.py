"""Delivered means stored, end to end on real parts: bench --publish, agent flush, the collector.

Results measured while the broker is down wait in the spool; ``agent flush`` sends them and the
collector's receipts empty the spool. Re-sends of what is already stored are receipted too, and
stored once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.spool import Spool
from collector.config import MqttSettings
from collector.service import CollectorService
from collector.stores.base import Store, open_store
from edgemeter.cli import main
from edgemeter.demo.broker import free_port
from tests.factories import make_result


@pytest.fixture()
def collector(mosquitto_url: str, tmp_path: Path) -> Iterator[tuple[CollectorService, Store]]:
    store = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    service = CollectorService(store, MqttSettings(url=mosquitto_url,
                                                   client_id=f"flush-{uuid.uuid4().hex[:8]}"))
    service.start()
    yield service, store
    service.stop()
    store.close()


def test_agent_flush_delivers_what_bench_publish_kept_while_the_broker_was_down(
    collector: tuple[CollectorService, Store], mosquitto_url: str, shared_models: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _service, store = collector
    spool_path = tmp_path / "state" / "spool.db"
    monkeypatch.setenv("EDGEMETER_SPOOL", str(spool_path))
    dead = f"mqtt://127.0.0.1:{free_port()}"
    fleet = f"f{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        code = main(["bench", str(shared_models / "kws_dscnn_int8.tflite"), "--iterations", "30",
                     "--power", "none", "--fidelity", "0", "-q", "--device-id", "board-1",
                     "--fleet", fleet, "--publish", dead])
        assert code == 3
    with Spool(spool_path) as spool:
        waiting = {e.run_id for e in spool.pending()}
    assert len(waiting) == 3
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "board-1"\nfleet = "{fleet}"\n[mqtt]\nurl = "{mosquitto_url}"\n'
                      f'[spool]\npath = "{spool_path}"\n')
    capsys.readouterr()
    assert main(["agent", "flush", "--config", str(config), "--timeout-s", "30"]) == 0
    assert "3 confirmed stored by the collector, 0 still waiting" in capsys.readouterr().out
    stored = {str(r.run_id) for r in store.list_results()}
    assert waiting <= stored
    with Spool(spool_path) as spool:
        assert spool.depth() == 0
        assert spool.counter("seq") == 3


def test_a_resent_result_is_receipted_and_stored_once(
    collector: tuple[CollectorService, Store], mosquitto_url: str, tmp_path: Path,
) -> None:
    from agent.publish import publish_via_spool

    _service, store = collector
    result = make_result(device_id="board-2", fleet="resend", seq=1)
    with Spool(tmp_path / "spool.db") as spool:
        spool.put(result)
        first = publish_via_spool(spool, mosquitto_url, receipt_timeout_s=30)
        assert first.unconfirmed == frozenset()
        spool.put(result)  # as if the receipt had been lost: the same run goes again
        spool.mark_sent([str(result.run_id)])  # so the next send is a flagged re-send
        again = publish_via_spool(spool, mosquitto_url, receipt_timeout_s=30)
        assert again.unconfirmed == frozenset() and spool.depth() == 0
    runs = [r for r in store.list_results() if r.run_id == result.run_id]
    assert len(runs) == 1
