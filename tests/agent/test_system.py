"""System-state sampling against fake sysfs trees laid out like the real kernel's.

Layouts: thermal zones as in the kernel's Documentation/driver-api/thermal/sysfs-api.rst
(``thermal_zoneN/type``, ``thermal_zoneN/temp`` in millidegrees Celsius); CPU frequency as in
Documentation/admin-guide/pm/cpufreq.rst (``cpuN/cpufreq/scaling_cur_freq`` in kHz); throttling as
printed by Raspberry Pi's ``vcgencmd get_throttled`` (``throttled=0x50005``, bits per the vcgencmd
documentation).
"""

from __future__ import annotations

import time
from pathlib import Path

from agent.manifest import collect_manifest
from agent.system import SystemSampler, decode_throttled
from shared.catalogue import load_catalogue


def fake_pi_tree(root: Path) -> Path:
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("61300\n")
    for cpu, khz in enumerate((2400000, 1500000)):
        freq = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_cur_freq").write_text(f"{khz}\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    (root / "proc/cpuinfo").write_text(
        "processor\t: 0\nBogoMIPS\t: 108.00\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
    )
    return root


def test_sampler_reads_temperatures_frequency_and_throttling_from_the_given_root(tmp_path: Path) -> None:
    root = fake_pi_tree(tmp_path)
    sampler = SystemSampler(root, hz=50, runner=lambda argv: "throttled=0x50005\n")
    sampler.start()
    time.sleep(0.15)
    state = sampler.stop(model_load_rss_bytes=1234)
    assert state.samples >= 2
    assert state.temps_c_max == {"thermal_zone0:cpu-thermal": 61.3}
    assert state.cpu_freq_mhz_mean == 1950.0
    assert state.throttled is True
    assert "under-voltage detected" in state.throttle_reasons
    assert "currently throttled" in state.throttle_reasons
    assert state.model_load_rss_bytes == 1234
    assert state.peak_rss_bytes and state.peak_rss_bytes > 0


def test_throttle_bits_decode_as_documented() -> None:
    assert decode_throttled("throttled=0x0") == (False, [])
    throttled, reasons = decode_throttled("throttled=0x80000")
    assert throttled and reasons == ["soft temperature limit has occurred"]


def test_missing_tools_and_files_leave_fields_unmeasured_not_zero(tmp_path: Path) -> None:
    sampler = SystemSampler(tmp_path, hz=50, runner=lambda argv: None)
    sampler.start()
    state = sampler.stop()
    assert state.throttled is None and state.temps_c_max == {}
    assert state.cpu_freq_mhz_mean is None


def test_manifest_reads_the_board_and_maps_it_to_the_catalogue(tmp_path: Path) -> None:
    manifest = collect_manifest(fake_pi_tree(tmp_path), load_catalogue())
    assert manifest.board == "Raspberry Pi 5 Model B Rev 1.0"
    assert manifest.cpu_model == "Raspberry Pi 5 Model B Rev 1.0"
    assert manifest.hardware_key is not None


def test_manifest_finds_a_coral_pcie_under_the_root_not_the_real_dev(tmp_path: Path) -> None:
    assert collect_manifest(tmp_path).accelerators == []
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/apex_0").write_text("")
    assert collect_manifest(tmp_path).accelerators == ["coral-pcie"]


def test_jetson_clock_below_its_maximum_is_reported_as_throttling(tmp_path: Path) -> None:
    # JetPack marks its root file system with /etc/nv_tegra_release; cpufreq as in the kernel docs
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    freq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    freq.mkdir(parents=True)
    (freq / "scaling_cur_freq").write_text("729600\n")
    (freq / "cpuinfo_max_freq").write_text("1728000\n")
    sampler = SystemSampler(tmp_path, hz=50, runner=lambda argv: None)
    sampler.start()
    state = sampler.stop()
    assert state.throttled is True
    assert "730 MHz of 1728 MHz" in state.throttle_reasons[0]
    (freq / "scaling_cur_freq").write_text("1728000\n")
    pinned = SystemSampler(tmp_path, hz=50, runner=lambda argv: None)
    pinned.start()
    assert pinned.stop().throttled is None


PI4_CPUINFO = (  # /proc/cpuinfo of a Raspberry Pi 4 (64-bit OS), one core shown
    "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\nRevision\t: c03114\nSerial\t\t: 100000001234abcd\n"
    "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)


def test_without_a_device_tree_the_board_comes_from_cpuinfos_model_line(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(PI4_CPUINFO)
    manifest = collect_manifest(tmp_path, load_catalogue())
    assert manifest.board == "Raspberry Pi 4 Model B Rev 1.4"
    assert manifest.hardware_key == "raspberry-pi-4"


def test_without_a_device_tree_a_jetson_is_named_from_its_l4t_files(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, "
        "DATE: Fri Jul 19 23:24:25 UTC 2024\n# KERNEL_VARIANT: oot\n")
    assert collect_manifest(tmp_path).board == "NVIDIA Jetson (L4T R36.3.0)"
    (tmp_path / "etc/nv_boot_control.conf").write_text(
        "TNSPEC 3767-300-0005-K.2-1-1-jetson-orin-nano-devkit-\n"
        "COMPATIBLE_SPEC 3767-000-0000--1--jetson-orin-nano-devkit-\nTEGRA_LEGACY_UPDATE false\n")
    manifest = collect_manifest(tmp_path, load_catalogue())
    assert manifest.board == "NVIDIA Jetson Orin Nano 8GB (L4T R36.3.0)"
    assert manifest.hardware_key == "jetson-orin-nano-8gb"


def test_the_device_tree_model_wins_over_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    (tmp_path / "proc/cpuinfo").write_text(PI4_CPUINFO)
    assert collect_manifest(tmp_path).board == "Raspberry Pi 5 Model B Rev 1.0"
