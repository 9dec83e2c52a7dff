"""The timed phase of each MLPerf-style scenario. The runner owns the clock here.

Each scenario gets zero-argument inference calls (one per stream) from the backend and returns the
per-query latencies and start times in nanoseconds (``time.perf_counter_ns``). Nothing but the
inference call sits between the two clock reads of a query.

* ``single-stream``: one query of one inference at a time; latency = that call.
* ``multi-stream``: each query is ``samples_per_query`` samples: one batched call where the model
  takes that batch, else that many calls back to back; latency = the whole query.
* ``server``: queries arrive as a Poisson process at ``target_qps`` (seeded); latency = completion
  minus scheduled arrival, so it includes queueing; ``streams`` workers serve the queue.
* ``offline``: ``streams`` workers, each with its own session and batch, run flat out; throughput is
  all samples over the wall time from the common start to the last completion.

A :class:`StopRule` may carry a ``settled`` test: once the minimums are met, single-stream,
multi-stream and offline runs go on, checking it about once a second between two queries (never
inside one), until it passes or ``max_duration_ns`` is reached. The server scenario serves a fixed,
seeded Poisson schedule and is not extended.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Call = Callable[[], object]
clock = time.perf_counter_ns


Settled = Callable[[np.ndarray], bool]
"""Given the query start times so far (ns from the phase start), whether the run may stop."""


@dataclass(frozen=True)
class StopRule:
    """Stop once at least ``min_queries`` ran and ``min_duration_ns`` passed.

    With ``settled``, go on past the minimums until ``settled(starts_ns)`` is true, checked every
    ``check_every_ns``, or until ``max_duration_ns``.
    """

    min_queries: int
    min_duration_ns: int
    max_queries: int | None = None
    settled: Settled | None = None
    max_duration_ns: int | None = None
    check_every_ns: int = 1_000_000_000


@dataclass(frozen=True)
class Timed:
    latencies_ns: np.ndarray
    starts_ns: np.ndarray
    """query start (or scheduled arrival) relative to the phase start"""
    samples: int
    wall_ns: int
    extended: bool = False
    """the run went on past its minimums because ``StopRule.settled`` said it had not settled"""


class _Stopper:
    """Applies a :class:`StopRule`; not thread-safe (offline calls it under its lock)."""

    def __init__(self, rule: StopRule) -> None:
        self.rule = rule
        self.next_check_ns = rule.min_duration_ns
        self.extended = False

    def done(self, n: int, elapsed_ns: int, starts: array[int]) -> bool:
        rule = self.rule
        if rule.max_queries is not None and n >= rule.max_queries:
            return True
        if n < rule.min_queries or elapsed_ns < rule.min_duration_ns:
            return False
        if rule.settled is None:
            return True
        if rule.max_duration_ns is not None and elapsed_ns >= rule.max_duration_ns:
            return True
        if elapsed_ns < self.next_check_ns:
            return False
        self.next_check_ns = elapsed_ns + rule.check_every_ns
        if rule.settled(np.frombuffer(starts, dtype=np.int64).copy()):
            return True
        self.extended = True
        return False


def single_stream(call: Call, rule: StopRule, samples_per_query: int = 1,
                  record: array[int] | None = None) -> Timed:
    """``record``: the array each latency is appended to (a progress reporter may read it)."""
    lat = record if record is not None else array("q")
    starts = array("q")
    stopper = _Stopper(rule)
    n = 0
    begin = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        lat.append(t1 - t0)
        starts.append(t0 - begin)
        n += 1
        if stopper.done(n, t1 - begin, starts):
            break
    return Timed(np.frombuffer(lat, dtype=np.int64), np.frombuffer(starts, dtype=np.int64),
                 n * samples_per_query, clock() - begin, stopper.extended)


def repeat(call: Call, times: int) -> Call:
    """A multi-stream query made of ``times`` single-sample calls."""
    if times == 1:
        return call

    def query() -> None:
        for _ in range(times):
            call()

    return query


def _worker_results(parts: list[tuple[array[int], array[int], int]], samples_per_query: int,
                    begin: int, end: int, extended: bool = False) -> Timed:
    lat = np.concatenate([np.frombuffer(p[0], dtype=np.int64) for p in parts])
    starts = np.concatenate([np.frombuffer(p[1], dtype=np.int64) for p in parts])
    order = np.argsort(starts, kind="stable")
    queries = sum(p[2] for p in parts)
    return Timed(lat[order], starts[order], queries * samples_per_query, end - begin, extended)


def offline(calls: Sequence[Call], rule: StopRule, batch: int) -> Timed:
    """Every stream runs flat out; the stop rule counts queries over all streams.

    A ``settled`` test sees the start times of the stream that checks it: one stream's windows
    stand for the run's (the final verdict uses every stream).
    """
    stop = threading.Event()
    stopper = _Stopper(rule)
    barrier = threading.Barrier(len(calls) + 1)
    counter = [0]
    lock = threading.Lock()
    parts: list[tuple[array[int], array[int], int]] = [(array("q"), array("q"), 0)] * len(calls)
    begin_box = [0]
    errors: list[BaseException] = []

    def worker(idx: int, call: Call) -> None:
        lat, starts = array("q"), array("q")
        n = 0
        try:
            barrier.wait()
            begin = begin_box[0]
            while not stop.is_set():
                t0 = clock()
                call()
                t1 = clock()
                lat.append(t1 - t0)
                starts.append(t0 - begin)
                n += 1
                with lock:
                    counter[0] += 1
                    if stopper.done(counter[0], t1 - begin, starts):
                        stop.set()
        except BaseException as err:  # surface backend errors in the caller's thread
            errors.append(err)
            stop.set()
        parts[idx] = (lat, starts, n)

    threads = [threading.Thread(target=worker, args=(i, c), daemon=True)
               for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    begin_box[0] = clock()
    barrier.wait()
    for t in threads:
        t.join()
    end = clock()
    if errors:
        raise errors[0]
    return _worker_results(parts, batch, begin_box[0], end, stopper.extended)


def poisson_arrivals_ns(target_qps: float, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1e9 / target_qps, size=count)
    return np.cumsum(gaps).astype(np.int64)


def server_schedule_ns(rule: StopRule, target_qps: float, seed: int) -> np.ndarray:
    """The seeded arrivals of a server run: ``max_queries`` of them when set, else (as LoadGen
    schedules) at least ``min_queries`` and until one is scheduled at or after
    ``min_duration_ns``, so the last scheduled query meets the minimum duration."""
    if rule.max_queries is not None:
        return poisson_arrivals_ns(target_qps, rule.max_queries, seed)
    count = max(rule.min_queries, int(target_qps * rule.min_duration_ns / 1e9) + 1)
    arrivals = poisson_arrivals_ns(target_qps, count, seed)
    while arrivals[-1] < rule.min_duration_ns:
        count += max(count // 8, 16)
        arrivals = poisson_arrivals_ns(target_qps, count, seed)  # same seed: a longer prefix
    last = max(rule.min_queries, int(np.searchsorted(arrivals, rule.min_duration_ns)) + 1)
    return arrivals[:last]


def _wait_until(deadline_ns: int) -> None:
    remaining = deadline_ns - clock()
    if remaining > 2_000_000:
        time.sleep((remaining - 1_000_000) / 1e9)
    while clock() < deadline_ns:
        pass


def server(calls: Sequence[Call], rule: StopRule, target_qps: float, seed: int,
           samples_per_query: int = 1) -> Timed:
    """Poisson arrivals served by ``len(calls)`` workers in arrival order."""
    arrivals = server_schedule_ns(rule, target_qps, seed)
    next_idx = [0]
    lock = threading.Lock()
    parts: list[tuple[array[int], array[int], int]] = [(array("q"), array("q"), 0)] * len(calls)
    errors: list[BaseException] = []
    begin = clock()

    def worker(idx: int, call: Call) -> None:
        lat, starts = array("q"), array("q")
        n = 0
        try:
            while True:
                with lock:
                    i = next_idx[0]
                    if i >= len(arrivals):
                        break
                    next_idx[0] += 1
                arrival = begin + int(arrivals[i])
                _wait_until(arrival)
                call()
                t1 = clock()
                lat.append(t1 - arrival)
                starts.append(arrival - begin)
                n += 1
        except BaseException as err:
            errors.append(err)
        parts[idx] = (lat, starts, n)

    threads = [threading.Thread(target=worker, args=(i, c), daemon=True)
               for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = clock()
    if errors:
        raise errors[0]
    return _worker_results(parts, samples_per_query, begin, end)


def warm_up(call: Call, fixed: int | None, max_s: float = 5.0, chunk: int = 10,
            tolerance: float = 0.05) -> tuple[int, bool]:
    """Warm up ``fixed`` iterations, or until the median of the last three chunks settles.

    Returns (iterations run, settled). Settled means the last three chunk medians lie within
    ``tolerance`` of each other; the warm-up gives up after ``max_s`` seconds.
    """
    if fixed is not None:
        for _ in range(fixed):
            call()
        return fixed, True
    medians: list[float] = []
    deadline = clock() + int(max_s * 1e9)
    runs = 0
    while clock() < deadline:
        lat = []
        for _ in range(chunk):
            t0 = clock()
            call()
            lat.append(clock() - t0)
        runs += chunk
        medians.append(float(np.median(lat)))
        last = medians[-3:]
        if len(last) == 3 and max(last) <= min(last) * (1 + tolerance):
            return runs, True
    return runs, False
