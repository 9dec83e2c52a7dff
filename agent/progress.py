"""Progress of a run while it happens: phases, iterations done, running p50.

The runner reports to a *sink* (a callable taking a dict such as ``{"phase": "measure",
"iterations_done": 812, "running_p50_ms": 2.31}``). Nothing is added to the timed loop: the loop
appends each latency to an ``array`` it is given (:class:`LiveLatencies`), as it always did, and a
reporter thread reads that array once a second (the median of the newest 256 latencies). Offline
and server runs report their phase only.

Sinks: :func:`null_sink` (the default), :class:`TerminalProgress` (one line on stderr, redrawn,
for ``bench`` and ``sweep`` on a terminal), and the daemon's job child, which writes each report
as a JSON line for the daemon to relay on ``.../progress``. The measure phase's first report says
how long it will take (``min_s``, and ``at_most_s`` where the profile may extend it).

:class:`TerminalProgress` never shares a line with other output: while it is shown, a log record
first clears the line (it filters the stream's logging handlers), and the load phase, when native
runtimes print their own lines, ends its line with a newline.
"""

from __future__ import annotations

import logging
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


NEWLINE_PHASES = frozenset({"load"})
"""Phases during which native runtimes print lines of their own: their progress line ends."""


def _duration_text(report: dict[str, Any]) -> str:
    low, high = report.get("min_s"), report.get("at_most_s")
    if high:
        return f" (at least {low:g} s, at most {high:g} s)" if low else f" (at most {high:g} s)"
    return f" (about {low:g} s)" if low else ""


class TerminalProgress(logging.Filter):
    """One status line on a terminal, redrawn in place; nothing at all when not a terminal.

    While enabled it is a filter on every root logging handler that writes to its stream, so a
    log line clears the status line before it is written; :meth:`close` removes it.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = self.stream.isatty()
        self._width = 0
        self._duration = ""
        self._lock = threading.Lock()
        self._handlers = [h for h in logging.getLogger().handlers
                          if getattr(h, "stream", None) is self.stream] if self.enabled else []
        for handler in self._handlers:
            handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        """Clear the status line before a log record is written on the same stream."""
        self._clear()
        return True

    def _clear(self) -> None:
        with self._lock:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0

    def __call__(self, report: dict[str, Any]) -> None:
        if not self.enabled:
            return
        phase = report.get("phase", "")
        if phase == "measure" and ("min_s" in report or "at_most_s" in report):
            self._duration = _duration_text(report)
        text = f"{self.label}: {phase}" + (self._duration if phase == "measure" else "")
        if report.get("iterations_done"):
            text += f", {report['iterations_done']} queries"
        if report.get("running_p50_ms") is not None:
            text += f", p50 {report['running_p50_ms']:.3f} ms"
        with self._lock:
            if phase in NEWLINE_PHASES:
                self.stream.write("\r" + text.ljust(self._width) + "\n")
                self._width = 0
            else:
                self.stream.write("\r" + text.ljust(self._width))
                self._width = len(text)
            self.stream.flush()

    def close(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self)
        self._handlers = []
        if self.enabled:
            self._clear()
