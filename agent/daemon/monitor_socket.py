"""The daemon's monitor socket: applications' windows (``agent.monitor.InferenceMonitor``) in.

The daemon owns a Unix datagram socket (:func:`agent.monitor.default_socket`, mode 0660 so the
daemon's group may write to it). Each datagram is one :class:`agent.monitor.LocalWindow`;
:class:`MonitorSocket`'s thread reads it, validates it and only enqueues it (an invalid datagram is
counted in ``rejected`` and logged once). The daemon's own loop then calls :meth:`MonitorSocket.
drain` with its identity and newest telemetry, which completes each window
(:func:`complete_window`: device id, fleet, power, temperature, throttling, percentiles) and
puts it in the spool, from where the courier publishes it like a result, until the collector's
receipt::

    intake = MonitorSocket(default_socket()).start()
    ...
    # in the daemon's loop, e.g. next to each telemetry snapshot:
    intake.drain(spool, device_id=..., fleet=..., telemetry=latest_telemetry)
    ...
    intake.close()

State: the queue is the only thing the reader thread and the daemon's loop share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket as socketlib
import threading
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from agent.monitor import LocalWindow
from shared.messages import Telemetry
from shared.monitoring import MonitorWindow, window_latency

__all__ = ["MAX_DATAGRAM_BYTES", "MonitorSocket", "complete_window"]

logger = logging.getLogger(__name__)

MAX_DATAGRAM_BYTES = 256 * 1024
MAX_QUEUED = 10_000


class WindowSpool(Protocol):
    def put_window(self, window: MonitorWindow) -> None: ...


def complete_window(local: LocalWindow, *, device_id: str, fleet: str,
                    telemetry: Telemetry | None = None) -> MonitorWindow:
    """The wire window of an application's window, with the board's state from ``telemetry``."""
    seconds = (local.end - local.start).total_seconds()
    temps = list(telemetry.temps_c.values()) if telemetry is not None else []
    return MonitorWindow(
        device_id=device_id, fleet=fleet, name=local.name, start=local.start, end=local.end,
        queries=local.queries, latencies=local.latencies,
        latency_ms=window_latency(local.latencies),
        throughput_sps=local.queries / seconds if seconds > 0 else None,
        power_w=telemetry.power_w if telemetry else None,
        power_source=telemetry.power_source if telemetry else None,
        power_estimated=telemetry.power_estimated if telemetry else None,
        temperature_c=max(temps) if temps else None,
        throttled=telemetry.throttled if telemetry else None, dropped=local.dropped)


class MonitorSocket:
    """Reads applications' windows from a Unix datagram socket into a queue (see the module)."""

    def __init__(self, path: Path, *, mode: int = 0o660) -> None:
        self.path = Path(path)
        self.mode = mode
        self.received = 0
        self.rejected = 0
        self.overflowed = 0
        self._queue: queue.Queue[LocalWindow] = queue.Queue(MAX_QUEUED)
        self._sock: socketlib.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._warned = False

    def start(self) -> MonitorSocket:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by an earlier run
        sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
        sock.bind(str(self.path))
        os.chmod(self.path, self.mode)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="edgemeter-monitor-socket",
                                        daemon=True)
        self._thread.start()
        logger.info("monitor socket listening at %s", self.path)
        return self

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stopping.is_set():
            try:
                data = sock.recv(MAX_DATAGRAM_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1
            try:
                window = LocalWindow.model_validate_json(data)
            except ValidationError as err:
                self.rejected += 1
                if not self._warned:
                    logger.warning("monitor socket %s: ignored an invalid window (%s)", self.path,
                                   str(err).splitlines()[0])
                    self._warned = True
                continue
            try:
                self._queue.put_nowait(window)
            except queue.Full:
                self.overflowed += 1

    def take(self) -> list[LocalWindow]:
        """Every window queued so far."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def drain(self, spool: WindowSpool, *, device_id: str, fleet: str,
              telemetry: Telemetry | None = None) -> int:
        """Complete every queued window and put it in ``spool``; returns how many."""
        windows = self.take()
        for local in windows:
            spool.put_window(complete_window(local, device_id=device_id, fleet=fleet,
                                             telemetry=telemetry))
        return len(windows)

    def close(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
