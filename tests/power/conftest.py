"""Helpers for the power tests: fixture trees copied into tmp_path, a live counter writer, fakes."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.power.base import PowerSource, Reading, SourceConfig
from shared.catalogue import HardwareEntry
from shared.schema import PowerScope

FIXTURES = Path(__file__).parent / "fixtures"


def copy_tree(name: str, dest: Path) -> Path:
    """Copy ``fixtures/<name>`` to ``dest/<name>`` and return it, to be used as a sysfs root."""
    root = dest / name
    shutil.copytree(FIXTURES / name, root)
    return root


def write_atomic(path: Path, text: str) -> None:
    """Replace a file the way sysfs does: a reader never sees it half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Counter:
    path: Path
    watts: float
    range_uj: int
    start_uj: int = 0
    wraps: int = 0
    last_uj: int = 0


class CounterWriter(threading.Thread):
    """Advances ``energy_uj`` files at given watts, wrapping at their range, ``hz`` times a second."""

    def __init__(self, counters: list[Counter], hz: float = 100.0) -> None:
        super().__init__(name="fake-rapl", daemon=True)
        self.counters = counters
        self.period = 1.0 / hz
        self.stop_event = threading.Event()
        self.t_start = time.monotonic()
        self._write(self.t_start)

    def _write(self, now: float) -> None:
        for c in self.counters:
            value = int(c.start_uj + c.watts * 1e6 * (now - self.t_start)) % c.range_uj
            if value < c.last_uj:
                c.wraps += 1
            c.last_uj = value
            write_atomic(c.path, f"{value}\n")

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            self._write(time.monotonic())

    def stop(self) -> None:
        self.stop_event.set()
        self.join(2.0)


@pytest.fixture()
def counter_writer() -> Iterator[list[CounterWriter]]:
    writers: list[CounterWriter] = []
    yield writers
    for writer in writers:
        writer.stop()


class FakeGauge(PowerSource):
    """A gauge with a fixed power and a chosen update period, for monitor tests."""

    name = "fake"
    scope = PowerScope.BOARD

    def __init__(self, watts: float = 5.0, update_period_s: float = 0.0,
                 max_hz: float = 100.0) -> None:
        super().__init__(SourceConfig())
        self.watts = watts
        self.update_period_s = update_period_s
        self.max_hz = max_hz
        self.counted_rails = ("main",)
        self.fail = False

    def probe(self) -> str | None:
        return None

    def read(self) -> Reading | None:
        if self.fail:
            return None
        return Reading(t_s=time.monotonic(), power_w={"main": self.watts})


def generic_x86() -> HardwareEntry:
    from shared.catalogue import load_catalogue

    entry = load_catalogue().get("generic-x86_64")
    return entry
