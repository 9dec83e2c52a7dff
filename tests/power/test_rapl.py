"""RAPL through powercap: discovery, non-overlapping totals, wrapping counters that follow a manual
clock, late counter updates and steady peaks, permissions."""

from __future__ import annotations

import itertools
import logging
import platform
import random
import shutil
from pathlib import Path

import pytest

from agent.errors import PowerSourceError
from agent.power import registry
from agent.power.base import FileReader, SourceContext
from agent.power.clock import ManualClock
from agent.power.monitor import open_source
from agent.power.rapl import RaplSettings, RaplSource
from agent.power.settings import PowerSettings
from shared.schema import PowerScope
from tests.power.conftest import ClockedReader, Counter, context, copy_tree, generic_x86, monitor

POWERCAP = "sys/class/powercap"


def test_discovers_zones_and_counts_only_the_package(tmp_path: Path) -> None:
    root = copy_tree("rapl", tmp_path)
    source = RaplSource(RaplSettings(root=root))
    assert source.probe() is None
    source.open()
    assert source.counted_rails == ("package-0",)
    reading = source.read()
    assert reading is not None and reading.energy_j is not None
    assert set(reading.energy_j) == {"package-0", "package-0/core", "package-0/uncore", "psys"}
    assert reading.energy_j["package-0"] == pytest.approx(123.456789)
    assert source.wrap_j["package-0"] == pytest.approx(262143.32885)
    assert source.scope is PowerScope.CPU_PACKAGE


def clocked_rapl(root: Path, clock: ManualClock, package: Counter, **others: Counter) -> RaplSource:
    base = root / POWERCAP
    zones = {"package": "intel-rapl:0", "core": "intel-rapl:0:0", "psys": "intel-rapl:1"}
    counters = {base / zones["package"] / "energy_uj": package}
    counters.update({base / zones[name] / "energy_uj": c for name, c in others.items()})
    for c in counters.values():
        c.t0 = clock.now_s
    source = RaplSource(RaplSettings(root=root), context(clock),
                        reader=ClockedReader(clock, counters))
    source.open()
    return source


def test_a_wrapping_12_w_counter_reads_12_w(tmp_path: Path, clock: ManualClock) -> None:
    """psys, package and core all advance; the package wraps about every 0.8 s."""
    root = copy_tree("rapl", tmp_path)
    (root / POWERCAP / "intel-rapl:0" / "max_energy_range_uj").write_text("10000000\n")  # 10 J
    package = Counter(watts=12.0, range_uj=10_000_000, start_uj=7_000_000)
    source = clocked_rapl(root, clock, package,
                          core=Counter(watts=7.0, range_uj=262143328850),
                          psys=Counter(watts=20.0, range_uj=262143328850))
    with monitor(source, clock, hz=20.0) as mon:
        mon.begin()
        clock.sleep(1.6)
        report = mon.end(inferences=160)
    assert report is not None and report.window_s == pytest.approx(1.6)
    assert report.source == "rapl" and report.scope is PowerScope.CPU_PACKAGE
    assert report.energy_j == pytest.approx(12.0 * 1.6, rel=1e-3)  # two wraps inside
    assert report.avg_power_w == pytest.approx(12.0, rel=1e-3)
    rails = {r.name: r for r in report.rails}
    assert rails["package-0"].avg_power_w == pytest.approx(12.0, rel=1e-3)
    assert rails["package-0/core"].avg_power_w == pytest.approx(7.0, rel=1e-3)
    assert rails["psys"].avg_power_w == pytest.approx(20.0, rel=1e-3)
    assert report.valid, report.reasons
    assert report.coverage == pytest.approx(1.0)
    assert report.samples == 35  # the first reading, both edge snapshots, 32 ticks at 20 Hz
    assert report.joules_per_inference == pytest.approx(report.energy_j / 160)
    assert report.inferences_per_joule == pytest.approx(160 / report.energy_j)
    assert report.idle_power_w is None and report.dynamic_joules_per_inference is None
    assert report.trace is not None and len(report.trace.t_s) == 35


def stalls(seed: int, seconds: float, every_s: float, lengths_s: tuple[float, float]) -> list[
        tuple[float, float]]:
    """Seeded late updates: about one every ``every_s``, each ``lengths_s`` long."""
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.uniform(0.5, 1.5) * every_s
        if t >= seconds:
            return out
        out.append((t, rng.uniform(*lengths_s)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_late_counter_updates_leave_the_peak_within_5_percent(
    tmp_path: Path, clock: ManualClock, seed: int
) -> None:
    """20 W steady, 32 W for 0.4 s in the middle; the counter is 20-45 ms late every ~0.25 s."""
    root = copy_tree("rapl", tmp_path)

    def watts(t: float) -> float:
        return 32.0 if 2.0 <= t - start < 2.4 else 20.0

    start = clock.now_s
    late = [(start + s, length) for s, length in stalls(seed, 4.0, 0.25, (0.02, 0.045))]
    package = Counter(watts=watts, range_uj=262143328850, stalls=late)
    source = clocked_rapl(root, clock, package)
    with monitor(source, clock, hz=20.0) as mon:
        mon.begin()
        clock.sleep(4.0)
        report = mon.end(inferences=400)
    assert report is not None and report.valid, report.reasons
    assert report.peak_window_ms == pytest.approx(100.0)
    assert report.peak_power_w == pytest.approx(32.0, rel=0.05)
    assert report.avg_power_w == pytest.approx((20.0 * 3.6 + 32.0 * 0.4) / 4.0, rel=0.02)
    # the same readings, taken interval by interval, would have reported a spike
    readings = mon.sampler.around(float("-inf"), float("inf"))
    naive = max((b.values["package-0"] - a.values["package-0"]) / (b.t_s - a.t_s)
                for a, b in itertools.pairwise(readings) if b.t_s - a.t_s > 0.02)
    assert naive > 32.0 * 1.05


def test_psys_counts_when_there_is_no_package(tmp_path: Path) -> None:
    root = copy_tree("rapl", tmp_path)
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"):
        shutil.rmtree(root / POWERCAP / zone)
    source = RaplSource(RaplSettings(root=root))
    source.open()
    assert source.counted_rails == ("psys",)


def test_disabled_and_missing_zones(tmp_path: Path) -> None:
    root = copy_tree("rapl", tmp_path)
    (root / POWERCAP / "intel-rapl:1" / "enabled").write_text("0\n")
    (root / POWERCAP / "intel-rapl:0:1" / "name").unlink()
    source = RaplSource(RaplSettings(root=root))
    source.open()
    reading = source.read()
    assert reading is not None and set(reading.values) == {"package-0", "package-0/core"}
    (root / POWERCAP / "intel-rapl:0" / "energy_uj").unlink()
    assert source.read() is None  # a vanished counter is a missed sample, not a zero
    assert "cannot read" in str(RaplSource(RaplSettings(root=root)).probe())
    assert "no RAPL zones" in str(RaplSource(RaplSettings(root=tmp_path / "x")).probe())


class NonRootReader(FileReader):
    """What an unprivileged user sees since CVE-2020-8694: energy_uj is mode 0400 root.

    The suite runs as root, which chmod cannot stop, so the denial is injected at the reader.
    """

    def read_text(self, path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return super().read_text(path)


def test_named_rapl_without_permission_says_how_to_grant_it(tmp_path: Path) -> None:
    root = copy_tree("rapl", tmp_path)
    source = RaplSource(RaplSettings(root=root), reader=NonRootReader())
    with pytest.raises(PowerSourceError) as err:
        open_source(PowerSettings(source="rapl"), SourceContext(), overrides={"rapl": source})
    message = str(err.value)
    assert "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in message
    assert "udev" in message and "\n" not in message


def test_auto_falls_back_when_rapl_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = copy_tree("rapl", tmp_path)
    monkeypatch.setitem(registry.AUTO_ORDER, platform.machine(), ("rapl",))
    source = RaplSource(RaplSettings(root=root), reader=NonRootReader())
    with caplog.at_level(logging.INFO, logger="agent.power"):
        picked = open_source(PowerSettings(), SourceContext(hardware=generic_x86()),
                             overrides={"rapl": source})
    assert picked is not None and picked.name == "estimate"
    assert any("rapl skipped" in r.getMessage() and "chmod" in r.getMessage()
               for r in caplog.records)
