"""Jetson INA3221 (hwmon and IIO) and INA238 layouts, totals and missing files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.power.clock import ManualClock
from agent.power.jetson import JetsonSettings, JetsonSource
from shared.schema import PowerScope
from tests.power.conftest import context, copy_tree, monitor

ORIN_NANO_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"


def opened(root: Path, clock: ManualClock | None = None) -> JetsonSource:
    source = JetsonSource(JetsonSettings(root=root), context(clock or ManualClock()))
    assert source.probe() is None
    source.open()
    return source


def test_orin_nano_jetpack5_reads_vdd_in_6_w(tmp_path: Path, clock: ManualClock) -> None:
    root = copy_tree("jetson-orin-nano-jp5", tmp_path)
    with monitor(opened(root, clock), clock, hz=20.0, idle_s=0.3) as mon:
        mon.measure_idle()
        mon.begin()
        clock.sleep(0.5)
        report = mon.end(inferences=50)
    assert report is not None and report.window_s is not None
    assert report.source == "jetson" and report.scope is PowerScope.MODULE
    assert report.estimated is False
    assert report.window_s == pytest.approx(0.5)
    assert report.avg_power_w == pytest.approx(6.0)
    assert report.peak_power_w == pytest.approx(6.0)
    assert report.idle_power_w == pytest.approx(6.0)
    assert report.dynamic_joules_per_inference == pytest.approx(0.0, abs=1e-9)
    assert report.joules_per_inference == pytest.approx(6.0 * 0.5 / 50)
    rails = {r.name: r.avg_power_w for r in report.rails}
    assert set(rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}  # no "sum of shunt voltages"
    assert rails["VDD_SOC"] == pytest.approx(4.984 * 0.440, rel=0.01)
    assert report.valid and report.coverage == pytest.approx(1.0)


def test_agx_orin_has_no_vdd_in_so_rails_add_up(tmp_path: Path) -> None:
    source = opened(copy_tree("jetson-agx-orin-jp5", tmp_path))
    assert source.scope is PowerScope.SOC_RAILS
    assert set(source.counted_rails) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0",
                                         "VDDQ_VDD2_1V8AO"}  # NC channels skipped
    reading = source.read()
    assert reading is not None and reading.power_w is not None
    total = sum(reading.power_w[r] for r in source.counted_rails)
    expected = 19.104 * 1.032 + 19.104 * 0.312 + 5.008 * 0.640 + 5.008 * 0.216
    assert total == pytest.approx(expected, rel=1e-6)


def test_jetpack4_iio_layout_totals_pom_5v_in(tmp_path: Path) -> None:
    source = opened(copy_tree("jetson-nano-jp4", tmp_path))
    assert source.counted_rails == ("POM_5V_IN",) and source.scope is PowerScope.MODULE
    reading = source.read()
    assert reading is not None and reading.power_w is not None
    assert reading.power_w["POM_5V_IN"] == pytest.approx(3.28)
    assert reading.power_w["POM_5V_GPU"] == pytest.approx(0.04)


def test_thor_ina238_microwatts_and_vin_total(tmp_path: Path) -> None:
    source = opened(copy_tree("jetson-thor", tmp_path))
    assert source.counted_rails == ("VIN",)
    reading = source.read()
    assert reading is not None and reading.power_w is not None
    assert reading.power_w == pytest.approx({"VIN": 42.5, "VDD_GPU": 21.3})


def test_ina238_without_label_is_named_by_device(tmp_path: Path) -> None:
    root = copy_tree("jetson-thor", tmp_path)
    (root / "sys/class/hwmon/hwmon4/label").unlink()
    source = opened(root)
    reading = source.read()
    assert reading is not None and "ina238-hwmon4" in reading.values


def test_found_through_class_hwmon_and_counted_once(tmp_path: Path) -> None:
    """Real sysfs links /sys/class/hwmon/hwmonN to the device dir; the same device is read once."""
    root = copy_tree("jetson-orin-nano-jp5", tmp_path)
    (root / "sys/class/hwmon").mkdir(parents=True)
    os.symlink(root / ORIN_NANO_HWMON, root / "sys/class/hwmon/hwmon1")
    source = opened(root)
    assert len(source._channels) == 3
    # only under /sys/class/hwmon (found by its name file)
    shutil.rmtree(root / "sys/bus")
    (root / "sys/class/hwmon/hwmon1").unlink()
    shutil.copytree(copy_tree("jetson-orin-nano-jp5", tmp_path / "b") / ORIN_NANO_HWMON,
                    root / "sys/class/hwmon/hwmon1")
    assert opened(root).counted_rails == ("VDD_IN",)


def test_a_rail_file_that_disappears_costs_coverage_not_zero(
    tmp_path: Path, clock: ManualClock
) -> None:
    root = copy_tree("jetson-orin-nano-jp5", tmp_path)
    with monitor(opened(root, clock), clock, hz=50.0) as mon:
        mon.begin()
        clock.sleep(0.2)
        (root / ORIN_NANO_HWMON / "curr1_input").unlink()
        clock.sleep(0.6)
        report = mon.end(inferences=10)
    assert report is not None
    assert report.valid is False
    assert any("cover only" in r for r in report.reasons)
    # readings up to 0.2 s, then none: covered up to the last reading, of a 0.8 s window
    assert report.coverage == pytest.approx(0.2 / 0.8, abs=0.03)


def test_missing_and_empty_layouts_say_why(tmp_path: Path) -> None:
    why = JetsonSource(JetsonSettings(root=tmp_path)).probe()
    assert why is not None and "INA3221" in why
    root = copy_tree("jetson-orin-nano-jp5", tmp_path)
    for n in (1, 2, 3):
        (root / ORIN_NANO_HWMON / f"in{n}_label").unlink()
    assert "no INA3221" in str(JetsonSource(JetsonSettings(root=root)).probe())
