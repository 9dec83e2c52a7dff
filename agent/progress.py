"""Progress of a run while it happens: phases, iterations done, running p50.

The runner reports to a *sink* (a callable taking a dict such as ``{"phase": "measure",
"iterations_done": 812, "running_p50_ms": 2.31}``). Nothing is added to the timed loop: the loop
appends each latency to an ``array`` it is given (:class:`LiveLatencies`), as it always did, and a
reporter thread reads that array once a second (the median of the newest 256 latencies). Offline
and server runs report their phase only.

Sinks: :func:`null_sink` (the default), :class:`TerminalProgress` (one line on stderr, redrawn,
for ``bench`` and ``sweep`` on a terminal), and the daemon's job child, which writes each report
as a JSON line for the daemon to relay on ``.../progress``.
"""

from __future__ import annotations

import statistics
import sys
import threading
from array import array
from collections.abc import Callable
from typing import Any, TextIO

ProgressSink = Callable[[dict[str, Any]], None]
TAIL = 256


def null_sink(_report: dict[str, Any]) -> None:
    """Reports nothing."""


class LiveLatencies:
    """The timed loop's latency record, read by a reporter thread every ``every_s`` seconds."""

    def __init__(self, sink: ProgressSink, every_s: float = 1.0) -> None:
        self.record: array[int] = array("q")
        self._sink = sink
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def report(self) -> None:
        done = len(self.record)
        tail = self.record[-TAIL:]
        p50 = statistics.median(tail) / 1e6 if len(tail) else None
        self._sink({"phase": "measure", "iterations_done": done, "running_p50_ms": p50})

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.report()

    def __enter__(self) -> LiveLatencies:
        if self._sink is not null_sink:
            self._thread = threading.Thread(target=self._run, name="edgemeter-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self.report()


class TerminalProgress:
    """One status line on a terminal, redrawn in place; nothing at all when not a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = self.stream.isatty()
        self._width = 0

    def __call__(self, report: dict[str, Any]) -> None:
        if not self.enabled:
            return
        text = f"{self.label}: {report.get('phase', '')}"
        if report.get("iterations_done"):
            text += f", {report['iterations_done']} queries"
        if report.get("running_p50_ms") is not None:
            text += f", p50 {report['running_p50_ms']:.3f} ms"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
