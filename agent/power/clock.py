"""Time as a thing passed in: the clock power readings are stamped with, and how the sampler waits.

* A clock is a ``Callable[[], int]`` returning nanoseconds (``clock_ns``; default
  :func:`time.monotonic_ns`). Sources stamp their readings with it, the monitor takes its window
  edges from it, and the estimate measures wall time with it.
* A :class:`Ticker` calls the sampler's ``tick`` every period. :class:`ThreadTicker`, the default,
  does so from one daemon thread that waits with an injectable ``wait`` (default
  :func:`time.sleep`).
* :class:`ManualClock` is the stand-in for tests (and for anyone replaying a run): its time moves
  only in :meth:`ManualClock.sleep`, which fires every due tick in time order on the caller's
  thread. A test then drives seconds of sampling in microseconds, with no thread and no race,
  however busy the machine is.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

ClockNs = Callable[[], int]
Sleep = Callable[[float], None]

__all__ = ["ClockNs", "ManualClock", "Sleep", "ThreadTicker", "Ticker"]


class Ticker(Protocol):
    """Calls ``tick`` every ``period_s`` until stopped. One start, one stop."""

    def start(self, period_s: float, tick: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


class ThreadTicker:
    """One daemon thread calling ``tick`` on a fixed schedule; a late tick skips, never bursts."""

    def __init__(
        self,
        clock_ns: ClockNs = time.monotonic_ns,
        wait: Sleep = time.sleep,
        name: str = "edgemeter-power",
    ) -> None:
        self._clock_ns = clock_ns
        self._wait = wait
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._period_s = 1.0

    def start(self, period_s: float, tick: Callable[[], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("a ThreadTicker starts once")
        self._period_s = period_s
        self._thread = threading.Thread(target=self._run, args=(period_s, tick), name=self._name,
                                        daemon=True)
        self._thread.start()

    def _run(self, period_s: float, tick: Callable[[], None]) -> None:
        # a plain sleep rather than Event.wait: on a VM a timed Event.wait costs about twice the
        # CPU of a sleep per wake-up, and wake-ups are most of the sampler's cost at 20 Hz
        period_ns = int(period_s * 1e9)
        next_ns = self._clock_ns() + period_ns
        while not self._stop.is_set():
            now_ns = self._clock_ns()
            if next_ns > now_ns:
                self._wait((next_ns - now_ns) / 1e9)
            if self._stop.is_set():
                break
            tick()
            next_ns += period_ns
            now_ns = self._clock_ns()
            if next_ns < now_ns:  # fell behind (a slow read): skip ticks rather than burst
                next_ns = now_ns + period_ns

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread; it notices within one period."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0 * self._period_s + 1.0)


class ManualClock:
    """A clock that moves only when told to, with tickers that fire as it moves.

    ``clock.clock_ns`` is the clock, ``clock.sleep`` the way to let time pass (it also fits where
    a ``wait`` or ``sleep`` is injected) and ``clock.ticker()`` a :class:`Ticker` for a sampler.
    Ticks run on the thread that calls :meth:`sleep`, at their exact due times, earliest first.
    """

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_ns = int(start_s * 1e9)
        self._due: list[tuple[int, int, _ManualTicker]] = []
        self._order = itertools.count()
        self._lock = threading.RLock()

    def clock_ns(self) -> int:
        return self.now_ns

    @property
    def now_s(self) -> float:
        return self.now_ns / 1e9

    def sleep(self, seconds: float) -> None:
        """Advance time by ``seconds``, firing every tick that falls due on the way."""
        if seconds < 0:
            raise ValueError("cannot go back in time")
        target = self.now_ns + round(seconds * 1e9)
        with self._lock:
            while self._due and self._due[0][0] <= target:
                due, _, ticker = heapq.heappop(self._due)
                if not ticker.active:
                    continue
                self.now_ns = max(self.now_ns, due)
                ticker.tick()
                if ticker.active:
                    self._schedule(ticker, due + ticker.period_ns)
            self.now_ns = target

    def ticker(self) -> Ticker:
        return _ManualTicker(self)

    def _schedule(self, ticker: _ManualTicker, due_ns: int) -> None:
        heapq.heappush(self._due, (due_ns, next(self._order), ticker))


class _ManualTicker:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.active = False
        self.period_ns = 1
        self.tick: Callable[[], None] = lambda: None

    def start(self, period_s: float, tick: Callable[[], None]) -> None:
        self.period_ns = max(1, round(period_s * 1e9))
        self.tick = tick
        self.active = True
        with self.clock._lock:
            self.clock._schedule(self, self.clock.now_ns + self.period_ns)

    def stop(self) -> None:
        self.active = False
