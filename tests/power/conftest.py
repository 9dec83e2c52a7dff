"""Helpers for the power tests: fixture trees, a manual clock, counters that follow it, fakes.

Time in these tests is a :class:`agent.power.clock.ManualClock`: the sampler's ticks fire inside
``clock.sleep()`` on the test's own thread, so a test of seconds of sampling runs in milliseconds
and gives the same readings however busy the machine is.
"""

from __future__ import annotations

import bisect
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.power.base import FileReader, PowerSource, Reading, SourceContext
from agent.power.clock import ManualClock
from agent.power.monitor import EnergyMonitor
from shared.catalogue import HardwareEntry
from shared.schema import PowerScope

FIXTURES = Path(__file__).parent / "fixtures"


def copy_tree(name: str, dest: Path) -> Path:
    """Copy ``fixtures/<name>`` to ``dest/<name>`` and return it, to be used as a sysfs root."""
    root = dest / name
    shutil.copytree(FIXTURES / name, root)
    return root


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


def context(clock: ManualClock, **fields: object) -> SourceContext:
    return SourceContext(clock_ns=clock.clock_ns, **fields)  # type: ignore[arg-type]


def monitor(source: PowerSource, clock: ManualClock, *, hz: float = 20.0,
            idle_s: float = 0.0) -> EnergyMonitor:
    """An EnergyMonitor on an opened ``source``, driven by ``clock``."""
    return EnergyMonitor(source, hz=hz, idle_s=idle_s, clock_ns=clock.clock_ns,
                         sleep=clock.sleep, ticker=clock.ticker())


@dataclass
class Counter:
    """An ``energy_uj`` file whose value follows the clock: ``watts(t)`` integrated, in uJ, wrapping
    at ``range_uj``, published every ``update_s``; an update due inside a stall is late, and the
    counter catches up at the stall's end (what RAPL does now and then on a busy machine)."""

    watts: float | Callable[[float], float]
    range_uj: int
    start_uj: int = 0
    update_s: float = 0.001
    stalls: list[tuple[float, float]] = field(default_factory=list)  # (start, length) in seconds
    t0: float = 0.0

    def energy_j(self, t: float) -> float:
        """The true energy since ``t0`` (watts integrated in 1 ms steps when they vary)."""
        if not callable(self.watts):
            return self.watts * (t - self.t0)
        steps = int((t - self.t0) / 0.001)
        total = sum(self.watts(self.t0 + (i + 0.5) * 0.001) * 0.001 for i in range(steps))
        rest = t - self.t0 - steps * 0.001
        return total + self.watts(t - rest / 2) * rest

    def published_at(self, t: float) -> float:
        """The time of the last update visible at ``t``."""
        last = self.t0 + int((t - self.t0) / self.update_s) * self.update_s
        starts = [s for s, _ in self.stalls]
        i = bisect.bisect_right(starts, last) - 1
        if i >= 0:
            start, length = self.stalls[i]
            if start <= last < start + length and t < start + length:
                return min(start, t)
        return last

    def value_uj(self, t: float) -> int:
        return int(self.start_uj + self.energy_j(self.published_at(t)) * 1e6) % self.range_uj


class ClockedReader(FileReader):
    """Reads the fixture tree, except the ``energy_uj`` files given, which follow the clock."""

    def __init__(self, clock: ManualClock, counters: dict[Path, Counter]) -> None:
        self.clock = clock
        self.counters = counters

    def read_text(self, path: Path) -> str:
        counter = self.counters.get(path)
        if counter is None:
            return super().read_text(path)
        return f"{counter.value_uj(self.clock.now_s)}\n"


class FakeGauge(PowerSource):
    """A gauge with a fixed power and a chosen update period, stamped by the given clock."""

    name = "fake"
    scope = PowerScope.BOARD

    def __init__(self, clock: ManualClock, watts: float = 5.0, update_period_s: float = 0.0,
                 max_hz: float = 100.0) -> None:
        super().__init__(context=SourceContext(clock_ns=clock.clock_ns))
        self.watts = watts
        self.update_period_s = update_period_s
        self.max_hz = max_hz
        self.counted_rails = ("main",)
        self.fail = False
        self.reads = 0

    def probe(self) -> str | None:
        return None

    def read(self) -> Reading | None:
        self.reads += 1
        if self.fail:
            return None
        return Reading(t_s=self.context.now_s(), power_w={"main": self.watts})


def generic_x86() -> HardwareEntry:
    from shared.catalogue import load_catalogue

    return load_catalogue().get("generic-x86_64")


@pytest.fixture()
def closing() -> Iterator[list[EnergyMonitor]]:
    """Monitors to close after the test, whatever happens."""
    items: list[EnergyMonitor] = []
    yield items
    for item in items:
        item.close()
