"""RAPL through powercap: discovery, non-overlapping totals, live wrapping counters, permissions."""

from __future__ import annotations

import logging
import platform
import shutil
import time
from pathlib import Path

import pytest

from agent.errors import PowerSourceError
from agent.power import EnergyMonitor, registry
from agent.power.base import FileReader, SourceConfig
from agent.power.rapl import RaplSource
from shared.schema import PowerScope
from tests.power.conftest import Counter, CounterWriter, copy_tree, generic_x86

POWERCAP = "sys/class/powercap"


def test_discovers_zones_and_counts_only_the_package(tmp_path: Path) -> None:
    root = copy_tree("rapl", tmp_path)
    source = RaplSource(SourceConfig(sysfs_root=root))
    assert source.probe() is None
    source.open()
    assert source.counted_rails == ("package-0",)
    reading = source.read()
    assert reading is not None and reading.energy_j is not None
    assert set(reading.energy_j) == {"package-0", "package-0/core", "package-0/uncore", "psys"}
    assert reading.energy_j["package-0"] == pytest.approx(123.456789)
    assert source.wrap_j["package-0"] == pytest.approx(262143.32885)
    assert source.scope is PowerScope.CPU_PACKAGE


def test_live_counter_at_12_w_that_wraps_reads_12_w(tmp_path: Path, counter_writer: list) -> None:
    """psys, package and core all advance; the package wraps about every 0.8 s."""
    root = copy_tree("rapl", tmp_path)
    base = root / POWERCAP
    (base / "intel-rapl:0" / "max_energy_range_uj").write_text("10000000\n")  # 10 J
    package = Counter(base / "intel-rapl:0" / "energy_uj", watts=12.0, range_uj=10_000_000,
                      start_uj=7_000_000)
    core = Counter(base / "intel-rapl:0:0" / "energy_uj", watts=7.0, range_uj=262143328850)
    psys = Counter(base / "intel-rapl:1" / "energy_uj", watts=20.0, range_uj=262143328850)
    writer = CounterWriter([package, core, psys], hz=100.0)
    counter_writer.append(writer)
    writer.start()
    with EnergyMonitor("rapl", sysfs_root=root, hz=20.0, idle_s=0) as monitor:
        monitor.begin()
        wraps_before = package.wraps
        time.sleep(1.6)
        report = monitor.end(inferences=160)
    assert report is not None and report.window_s is not None and report.energy_j is not None
    assert package.wraps - wraps_before >= 1, "the counter should have wrapped in the window"
    assert report.source == "rapl" and report.scope is PowerScope.CPU_PACKAGE
    assert report.avg_power_w == pytest.approx(12.0, rel=0.03)
    assert report.energy_j == pytest.approx(12.0 * report.window_s, rel=0.03)
    rails = {r.name: r for r in report.rails}
    assert rails["package-0"].avg_power_w == pytest.approx(12.0, rel=0.03)
    assert rails["package-0/core"].avg_power_w == pytest.approx(7.0, rel=0.03)
    assert rails["psys"].avg_power_w == pytest.approx(20.0, rel=0.03)
    assert report.valid, report.reasons
    assert report.coverage == pytest.approx(1.0)
    assert report.joules_per_inference == pytest.approx(report.energy_j / 160)
    assert report.inferences_per_joule == pytest.approx(160 / report.energy_j)
    assert report.idle_power_w is None and report.dynamic_joules_per_inference is None
    assert report.trace is not None and 1 < len(report.trace.t_s) <= 200
    print(f"rapl: {report.avg_power_w:.3f} W over {report.window_s:.2f} s, "
          f"{package.wraps - wraps_before} wraps, {report.samples} samples")


def test_psys_counts_when_there_is_no_package(tmp_path: Path) -> None:
    root = copy_tree("rapl", tmp_path)
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"):
        shutil.rmtree(root / POWERCAP / zone)
    source = RaplSource(SourceConfig(sysfs_root=root))
    source.open()
    assert source.counted_rails == ("psys",)


def test_disabled_and_missing_zones(tmp_path: Path) -> None:
    root = copy_tree("rapl", tmp_path)
    (root / POWERCAP / "intel-rapl:1" / "enabled").write_text("0\n")
    (root / POWERCAP / "intel-rapl:0:1" / "name").unlink()
    source = RaplSource(SourceConfig(sysfs_root=root))
    source.open()
    reading = source.read()
    assert reading is not None and set(reading.values) == {"package-0", "package-0/core"}
    (root / POWERCAP / "intel-rapl:0" / "energy_uj").unlink()
    assert source.read() is None  # a vanished counter is a missed sample, not a zero
    assert "cannot read" in str(RaplSource(SourceConfig(sysfs_root=root)).probe())
    assert "no RAPL zones" in str(RaplSource(SourceConfig(sysfs_root=tmp_path / "x")).probe())


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
    source = RaplSource(SourceConfig(sysfs_root=root, reader=NonRootReader()))
    with pytest.raises(PowerSourceError) as err:
        EnergyMonitor("rapl", sysfs_root=root, sources={"rapl": source})
    message = str(err.value)
    assert "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in message
    assert "udev" in message and "\n" not in message


def test_auto_falls_back_when_rapl_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = copy_tree("rapl", tmp_path)
    monkeypatch.setitem(registry.AUTO_ORDER, platform.machine(), ("rapl",))
    source = RaplSource(SourceConfig(sysfs_root=root, reader=NonRootReader()))
    with caplog.at_level(logging.INFO, logger="agent.power"), EnergyMonitor(
        "auto", sysfs_root=root, idle_s=0, hardware=generic_x86(), sources={"rapl": source}
    ) as monitor:
        assert monitor.source_name == "estimate"
    assert any("rapl skipped" in r.getMessage() and "chmod" in r.getMessage()
               for r in caplog.records)
