"""Monitor your own inference: latencies aggregated in-process into monitor windows.

An application that runs its own model times each inference::

    from agent.monitor import InferenceMonitor

    monitor = InferenceMonitor("vww-prod")          # windows of 10 s, through the local daemon
    with monitor.time():
        run()
    monitor.record(0.0042)                          # or a latency you measured, in seconds
    monitor.close()                                 # sends the last window

Every ``window_s`` a background thread turns what was recorded into a window (the queries, their
log-hist-v2 histogram, p50/p90/p99: :class:`shared.monitoring.MonitorWindow`'s figures) and sends
it. Windows appear on the collector under ``name``, like a monitoring job's (``GET
/api/devices/{id}/monitor?name=vww-prod``); a window with no queries is sent too, so a silent
monitor means a stopped application.

Where windows go:

* ``socket`` (the default, :func:`default_socket`): the local daemon's Unix datagram socket
  (``agent.daemon.monitor_socket``). The application needs no broker credentials; the daemon adds
  its device id, fleet, power, temperature and throttling, and spools the window like a result
  (kept until the collector's receipt).
* ``mqtt="mqtt://host:1883"`` with ``device_id`` and ``fleet``: published directly at QoS 1
  (:func:`shared.mqtt.connect`), without a spool: a window the broker does not take is dropped.

``record`` costs a lock, a logarithm and a dict update (``bench/monitor_record.py`` measures it
against a bare loop). It never blocks on the network and never raises: a latency that is not a
positive finite number of seconds under a day, and every query of a window that could not be sent
(no daemon, no broker), is counted in :attr:`InferenceMonitor.dropped` (and in the next window's
``dropped``). Thread-safe: any thread may record.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket as socketlib
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from shared import latency as latency_codec
from shared.monitoring import MonitorName, MonitorWindow, histogram_from_counts, window_latency
from shared.schema import Count, LatencyHistogram, Strict

__all__ = ["SOCKET_ENV", "InferenceMonitor", "LocalWindow", "default_socket"]

logger = logging.getLogger(__name__)

SOCKET_ENV = "EDGEMETER_MONITOR_SOCKET"
"""Names the daemon's monitor socket (both sides read it)."""
MAX_SECONDS = 86_400.0
_LOG_GAMMA = math.log(latency_codec.gamma(latency_codec.REL_ERROR))


def default_socket() -> Path:
    """``$EDGEMETER_MONITOR_SOCKET``, else ``$RUNTIME_DIRECTORY/monitor.sock`` (systemd), else
    ``monitor.sock`` in the daemon's state folder (``$XDG_STATE_HOME/edgemeter``)."""
    if os.environ.get(SOCKET_ENV):
        return Path(os.environ[SOCKET_ENV])
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "monitor.sock"
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "monitor.sock"
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state")
    return state / "edgemeter" / "monitor.sock"


class LocalWindow(Strict):
    """A window as an application sends it to the daemon: no device, no board state (the
    daemon adds them: ``agent.daemon.monitor_socket.complete_window``)."""

    name: MonitorName
    start: datetime
    end: datetime
    queries: Count
    latencies: LatencyHistogram | None = None
    dropped: Count = 0
    pid: int | None = Field(None, ge=0, description="the application's process id")


class Sender(Protocol):
    def send(self, window: LocalWindow) -> bool:
        """Hand the window on; False (never an exception) when it could not go."""

    def close(self) -> None: ...


class SocketSender:
    """Sends each window as one datagram to the daemon's Unix socket, never waiting."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._warned = False

    def send(self, window: LocalWindow) -> bool:
        try:
            self._sock.sendto(window.model_dump_json().encode(), str(self.path))
        except OSError as err:
            if not self._warned:
                logger.warning("monitor %s: the edgemeter daemon's socket %s does not take "
                               "windows (%s); counting them as dropped until it does",
                               window.name, self.path, err)
                self._warned = True
            return False
        self._warned = False
        return True

    def close(self) -> None:
        self._sock.close()


class MqttSender:
    """Publishes complete windows to the broker at QoS 1 (connecting lazily, again after a loss)."""

    def __init__(self, url: str, device_id: str, fleet: str, *,
                 connect: Callable[..., Any] | None = None) -> None:
        self.url = url
        self.device_id = device_id
        self.fleet = fleet
        self._connect = connect
        self._conn: Any = None
        self._warned = False

    def send(self, window: LocalWindow) -> bool:
        from shared.topics import Topics

        complete = MonitorWindow(
            device_id=self.device_id, fleet=self.fleet, name=window.name, start=window.start,
            end=window.end, queries=window.queries, latencies=window.latencies,
            latency_ms=window_latency(window.latencies),
            throughput_sps=_rate(window), dropped=window.dropped)
        try:
            if self._conn is None:
                self._conn = self._open(f"edgemeter-monitor-{window.name}-{os.getpid()}")
            self._conn.publish(Topics.monitor(self.fleet, self.device_id),
                               complete.model_dump_json().encode(), qos=1, timeout_s=5.0)
        except Exception as err:  # any broker trouble: drop this window, reconnect next time
            if not self._warned:
                logger.warning("monitor %s: cannot publish to %s (%s); counting windows as "
                               "dropped until it works", window.name, self.url, err)
                self._warned = True
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.close()
            self._conn = None
            return False
        self._warned = False
        return True

    def _open(self, client_id: str) -> Any:
        if self._connect is not None:
            return self._connect(self.url, client_id)
        from shared.mqtt import connect

        return connect(self.url, client_id)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.close()


def _rate(window: LocalWindow) -> float | None:
    seconds = (window.end - window.start).total_seconds()
    return window.queries / seconds if seconds > 0 else None


class _Timer:
    """``with monitor.time():`` (a class, not a generator: half the cost per block)."""

    __slots__ = ("_record", "_started")

    def __init__(self, record: Callable[[float], None]) -> None:
        self._record = record
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._record(time.perf_counter() - self._started)


class InferenceMonitor:
    """Times an application's inferences into windows (see the module docstring).

    State: the current window's counts belong to the monitor behind one lock (``record`` adds,
    the window thread swaps them out); the sender belongs to the window thread.
    """

    def __init__(self, name: str, window_s: float = 10.0, socket: str | Path | None = None,
                 mqtt: str | None = None, device_id: str | None = None,
                 fleet: str | None = None, *, sender: Sender | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        LocalWindow(name=name, start=datetime.now(timezone.utc),
                    end=datetime.now(timezone.utc), queries=0)  # a bad name fails here, once
        if not window_s > 0:
            raise ValueError("window_s must be above 0")
        if mqtt is not None and (device_id is None or fleet is None):
            raise ValueError("publishing directly (mqtt=...) needs device_id and fleet")
        self.name = name
        self.window_s = float(window_s)
        self._wall = wall
        if sender is None:
            sender = (MqttSender(mqtt, device_id or "", fleet or "") if mqtt is not None
                      else SocketSender(Path(socket) if socket is not None else default_socket()))
        self._sender = sender
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self._queries = 0
        self._bad = 0
        self._start_s = wall()
        self.recorded = 0
        """queries recorded into windows so far (sent or not)"""
        self.sent_queries = 0
        self.dropped = 0
        """latencies not delivered: invalid ones, and every query of a window that could not go"""
        self.windows_sent = 0
        self.windows_dropped = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"edgemeter-monitor-{name}",
                                        daemon=True)
        self._thread.start()

    # -- the application's side -------------------------------------------------------------------

    def record(self, seconds: float) -> None:
        """Count one inference that took ``seconds``; never blocks on I/O, never raises."""
        if 0.0 < seconds < MAX_SECONDS:  # False for NaN too
            ns = seconds * 1e9
            index = math.ceil(math.log(ns) / _LOG_GAMMA) if ns > 1.0 else 0
            with self._lock:
                counts = self._counts
                counts[index] = counts.get(index, 0) + 1
                self._queries += 1
        else:
            with self._lock:
                self._bad += 1

    def time(self) -> _Timer:
        """A context manager that times its block and records it (also when it raises)."""
        return _Timer(self.record)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what was recorded since the last window, stop the window thread."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(timeout_s)
        self._sender.close()

    def __enter__(self) -> InferenceMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the window thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.wait(max(0.0, self._start_s + self.window_s - self._wall())):
            self._flush()
        self._flush()

    def _take(self) -> LocalWindow:
        end_s = self._wall()
        with self._lock:
            counts, queries, bad = self._counts, self._queries, self._bad
            self._counts, self._queries, self._bad = {}, 0, 0
            start_s, self._start_s = self._start_s, end_s
        self.recorded += queries
        self.dropped += bad
        return LocalWindow(
            name=self.name, start=datetime.fromtimestamp(start_s, timezone.utc),
            end=datetime.fromtimestamp(max(end_s, start_s), timezone.utc), queries=queries,
            latencies=histogram_from_counts(counts), dropped=bad, pid=os.getpid())

    def _flush(self) -> None:
        try:
            window = self._take()
            sent = self._sender.send(window)
        except Exception:  # never into the application
            logger.exception("monitor %s: a window could not be made", self.name)
            return
        if sent:
            self.windows_sent += 1
            self.sent_queries += window.queries
        else:
            self.windows_dropped += 1
            self.dropped += window.queries

