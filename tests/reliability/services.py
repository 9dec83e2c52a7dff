"""What the fault tests share: a Mosquitto with persistence that can be killed, a fleet of real
daemons in this process, and the count every fault test ends with.

:class:`PersistentMosquitto` is a private Mosquitto (the one launcher,
:class:`edgemeter.demo.mosquitto.Mosquitto`) on a free loopback port with the persistence settings
of ``deploy/mosquitto/edgemeter.conf`` (``persistence true``, a persistent session queue of
100,000, an in-flight window of 100) and an ``autosave_interval`` of 1 s, so a test sees what the
store on disk holds within a second. :meth:`PersistentMosquitto.kill` is ``kill -9``: nothing is
saved on the way out. :meth:`PersistentMosquitto.start` after it reuses the port, the config and
``mosquitto.db``.

:class:`Fleet` runs :class:`agent.daemon.service.AgentDaemon` objects in this process on the
product's real :class:`agent.daemon.link.Link` (reconnecting with a short backoff) and their own
real :class:`agent.spool.Spool` files, each ticking every 50 ms: the courier path of a board,
minus the job runner (the test puts results into the spools as a finished job would).

:func:`tally` reads what the store holds and :func:`report` prints and checks the one line each
fault test ends with: ``published N, stored N, duplicated 0``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from agent.daemon.config import AgentSettings
from agent.daemon.jobs import ChildProcessJobRunner
from agent.daemon.link import Link, LinkOptions
from agent.daemon.service import AgentDaemon
from agent.model_cache import ModelCache
from agent.spool import Spool
from edgemeter.demo.loopback import free_port
from edgemeter.demo.mosquitto import Mosquitto, anonymous_config, find_mosquitto
from shared.messages import AgentManifest
from shared.mqtt import parse_broker_url
from shared.schema import BenchmarkResult, DeviceManifest
from tests.conftest import unavailable

HOST = "127.0.0.1"
POLL_S = 0.05
TICK_S = 0.05


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s`` (generous)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)


# -- the broker ------------------------------------------------------------------------------------

class PersistentMosquitto(Mosquitto):
    """A Mosquitto with persistence on disk; see the module docstring."""

    def __init__(self, workdir: Path, *, autosave_interval_s: int = 1) -> None:
        if find_mosquitto() is None:
            unavailable("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        self.data_dir = workdir / "data"
        super().__init__(
            workdir,
            anonymous_config(self.port, persistence_dir=self.data_dir,
                             autosave_interval_s=autosave_interval_s,
                             log_types=("error", "warning", "notice")),
            ports=[self.port], name="persistent test broker", start_timeout_s=15.0,
        )

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"


# -- the agents ------------------------------------------------------------------------------------

FLEET = "rel"


def agent_settings(device_id: str, state: Path, *, resend_after_s: float = 2.0,
                   broker_url: str = "mqtt://127.0.0.1:1883") -> AgentSettings:
    return AgentSettings(
        device_id=device_id, fleet=FLEET, telemetry_s=60, mqtt={"url": broker_url},
        spool={"path": state / "spool.db", "resend_after_s": resend_after_s},
        models={"cache_dir": state / "models"},
        bench={"power": "none", "profile": "quick", "fidelity": 0, "threads": 1},
    )


def manifest() -> AgentManifest:
    return AgentManifest(agent_version="test", device=DeviceManifest(hostname="reliability"))


def make_daemon(settings: AgentSettings, spool: Spool, **runner: Any) -> AgentDaemon:
    """A daemon on the real :class:`Link` (backoff 0.1-0.5 s) and the real job runner."""
    url = parse_broker_url(settings.mqtt.url)
    options = LinkOptions(client_id=f"edgemeter-agent-{settings.device_id}", keepalive_s=5,
                          backoff_min_s=0.1, backoff_max_s=0.5)

    def link_factory(**callbacks: Any) -> Link:
        return Link([url], options, **callbacks)

    return AgentDaemon(settings, spool=spool, link_factory=link_factory,
                       job_runner=ChildProcessJobRunner(**runner),
                       model_cache=ModelCache(settings.models.cache_dir), manifest=manifest)


@dataclass
class _Agent:
    daemon: AgentDaemon
    spool: Spool
    thread: threading.Thread


class Fleet:
    """Daemons with real spools and links in this process, ticking every :data:`TICK_S`."""

    def __init__(self, broker_url: str, workdir: Path, devices: int, *,
                 resend_after_s: float = 2.0) -> None:
        self.published: list[str] = []
        self._stop = threading.Event()
        self._agents: list[_Agent] = []
        for n in range(devices):
            device = f"dev-{n:02d}-{uuid.uuid4().hex[:4]}"
            settings = agent_settings(device, workdir / device, resend_after_s=resend_after_s,
                                      broker_url=broker_url)
            spool = Spool(settings.spool.path)
            daemon = make_daemon(settings, spool)
            thread = threading.Thread(target=daemon.run_forever, args=(self._stop, TICK_S),
                                      name=f"agent-{device}", daemon=True)
            self._agents.append(_Agent(daemon, spool, thread))

    @property
    def devices(self) -> list[str]:
        return [a.daemon.settings.device_id for a in self._agents]

    def start(self) -> Fleet:
        for agent in self._agents:
            agent.thread.start()
        return self

    def put(self, device_index: int, result: BenchmarkResult) -> None:
        """A job finished: its result goes to that device's spool (the daemon sends it)."""
        self._agents[device_index].spool.put(result)
        self.published.append(str(result.run_id))

    def spooled(self) -> int:
        return sum(a.spool.depth() for a in self._agents)

    def stop(self) -> None:
        self._stop.set()
        for agent in self._agents:
            if agent.thread.is_alive():
                agent.thread.join(20)
            agent.spool.close()


# -- the count -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tally:
    rows: int
    run_ids: frozenset[str]
    dead_letters: int

    @property
    def duplicated(self) -> int:
        return self.rows - len(self.run_ids)


def tally(db_url: str) -> Tally:
    """What the results database holds: result rows, distinct run_ids, dead-letter rows."""
    from collector.stores.dialects import database_for

    engine = database_for(db_url).engine
    try:
        with engine.connect() as conn:
            run_ids = [r[0] for r in conn.execute(text("SELECT run_id FROM results"))]
            dead = int(conn.execute(text("SELECT COUNT(*) FROM dead_letters")).scalar_one())
    finally:
        engine.dispose()
    return Tally(len(run_ids), frozenset(str(r) for r in run_ids), dead)


def stored_count(db_url: str) -> int:
    """Rows in ``results`` now (0 while the schema is not there yet)."""
    try:
        return tally(db_url).rows
    except Exception:  # not created yet, or locked for a moment
        return 0


def report(published: Iterable[str], db_url: str, *, dead_letters_allowed: int = 0,
           note: str = "") -> Tally:
    """Print ``published N, stored N, duplicated 0`` and check it (and no valid dead letter)."""
    sent = set(published)
    found = tally(db_url)
    line = f"published {len(sent)}, stored {len(found.run_ids & sent)}, " \
           f"duplicated {found.duplicated}"
    print(line + (f" ({note})" if note else ""))
    assert found.run_ids == sent, (
        f"{line}: missing {len(sent - found.run_ids)}, unexpected {len(found.run_ids - sent)}")
    assert found.duplicated == 0, line
    assert found.dead_letters <= dead_letters_allowed, \
        f"{found.dead_letters} dead letters for valid results"
    return found
