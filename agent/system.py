"""System state during a run, sampled by a background thread (never inside the timed loop).

Per-core CPU utilisation (psutil), CPU frequency (``cpufreq/scaling_cur_freq``, else psutil),
temperatures (``/sys/class/thermal/thermal_zone*/temp``, millidegrees), throttling (Raspberry Pi
``vcgencmd get_throttled`` bits, as documented by Raspberry Pi for ``vcgencmd``; on a Jetson, CPU
clocks below ``cpuinfo_max_freq``), and peak RSS.
``sysfs_root`` replaces ``/`` for every file read, so tests point it at a fake tree.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

from shared.schema import SystemState

logger = logging.getLogger(__name__)

# Bits of `vcgencmd get_throttled` (Raspberry Pi documentation, "vcgencmd").
THROTTLE_BITS = {
    0: "under-voltage detected",
    1: "arm frequency capped",
    2: "currently throttled",
    3: "soft temperature limit active",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}

CommandRunner = Callable[[list[str]], str | None]
JETSON_CLOCK_FLOOR = 0.95


def run_command(argv: list[str]) -> str | None:
    """Run a small tool and return its stdout, or None when it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def decode_throttled(output: str) -> tuple[bool, list[str]]:
    """Parse ``throttled=0x50005`` into (throttled now or since boot, reasons)."""
    value = int(output.strip().split("=", 1)[-1], 16)
    reasons = [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]
    return value != 0, reasons


def read_temperatures_c() -> dict[str, float]:
    """Every plausible temperature sensor psutil sees, ``chip.label`` -> degrees C; empty on a
    board without sensors (or where psutil cannot read them). Never raises."""
    temps: dict[str, float] = {}
    with contextlib.suppress(AttributeError, OSError):
        for chip, entries in psutil.sensors_temperatures().items():
            for i, entry in enumerate(entries):
                if entry.current is not None and -60 < entry.current < 200:
                    temps[f"{chip}.{entry.label or i}"] = float(entry.current)
    return temps


def read_throttle(vcgencmd: str | None) -> tuple[bool | None, list[str]]:
    """``vcgencmd get_throttled`` (a Raspberry Pi; ``vcgencmd`` is its path, found once by the
    caller): (throttled now or since boot, reasons); ``(None, [])`` where the board does not say."""
    if vcgencmd:
        output = run_command([vcgencmd, "get_throttled"])
        if output:
            return decode_throttled(output)
    return None, []


class SystemSampler:
    def __init__(
        self,
        sysfs_root: Path = Path("/"),
        hz: float = 4.0,
        runner: CommandRunner = run_command,
    ) -> None:
        self.root = sysfs_root
        self.period_s = 1.0 / hz
        self.hz = hz
        self.runner = runner
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process()
        self._per_core: list[list[float]] = []
        self._freqs: list[float] = []
        self._temps: dict[str, float] = {}
        self._peak_rss = 0
        self._zone_paths: list[tuple[str, Path]] = []
        self.samples = 0

    def _zones(self) -> list[tuple[str, Path]]:
        zones = []
        for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*")):
            try:
                name = (zone / "type").read_text().strip()
            except OSError:
                name = zone.name
            zones.append((f"{zone.name}:{name}", zone / "temp"))
        return zones

    def _freq_mhz(self) -> float | None:
        values = []
        for path in (self.root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"):
            try:
                values.append(int(path.read_text()) / 1000.0)
            except (OSError, ValueError):
                continue
        if values:
            return sum(values) / len(values)
        if self.root == Path("/"):
            freq = psutil.cpu_freq()
            return float(freq.current) if freq and freq.current else None
        return None

    def _max_freq_mhz(self) -> float | None:
        values = []
        for path in (self.root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
            try:
                values.append(int(path.read_text()) / 1000.0)
            except (OSError, ValueError):
                continue
        return max(values) if values else None

    def _jetson_clock_reason(self) -> str | None:
        """On a Jetson, a CPU clock below its maximum during the run means DVFS or thermal capping.

        JetPack boards scale clocks unless ``jetson_clocks`` pins them (NVIDIA Jetson Linux
        Developer Guide, "Power Management": the nvpmodel and jetson_clocks tools), so a run whose
        lowest sampled clock stays under 95 % of ``cpuinfo_max_freq`` is flagged.
        """
        if not (self.root / "etc/nv_tegra_release").exists() or not self._freqs:
            return None
        rated = self._max_freq_mhz()
        if rated is None or min(self._freqs) >= JETSON_CLOCK_FLOOR * rated:
            return None
        return (f"Jetson CPU clock fell to {min(self._freqs):.0f} MHz of {rated:.0f} MHz "
                "(pin clocks with `sudo jetson_clocks`)")

    def sample(self) -> None:
        self._per_core.append(psutil.cpu_percent(percpu=True))
        freq = self._freq_mhz()
        if freq is not None:
            self._freqs.append(freq)
        for name, path in self._zone_paths:
            try:
                celsius = int(path.read_text()) / 1000.0
            except (OSError, ValueError):
                continue
            self._temps[name] = max(self._temps.get(name, celsius), celsius)
        with contextlib.suppress(psutil.Error):
            self._peak_rss = max(self._peak_rss, self._proc.memory_info().rss)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.sample()
            except Exception:  # a sensor glitch must not end the run
                logger.debug("system sample failed", exc_info=True)

    def start(self) -> None:
        self._zone_paths = self._zones()
        psutil.cpu_percent(percpu=True)  # prime the counters: the first call returns 0.0
        self._thread = threading.Thread(target=self._loop, name="edgemeter-system", daemon=True)
        self._thread.start()

    def stop(self, model_load_rss_bytes: int | None = None) -> SystemState:
        self._stop.set()
        if self._thread:
            self._thread.join()
        in_run = self.samples
        if self.samples == 0:
            self._zone_paths = self._zone_paths or self._zones()
            self.sample()
        throttled: bool | None = None
        reasons: list[str] = []
        output = self.runner(["vcgencmd", "get_throttled"])
        if output and "=" in output:
            try:
                throttled, reasons = decode_throttled(output)
            except ValueError:
                logger.info("unexpected vcgencmd output %r", output)
        jetson = self._jetson_clock_reason()
        if jetson is not None:
            throttled = True
            reasons.append(jetson)
        cores = list(zip(*self._per_core, strict=False)) if self._per_core else []
        per_core = [sum(c) / len(c) for c in cores]
        return SystemState(
            samples=self.samples,
            sample_hz=self.hz,
            # a run shorter than one period has no utilisation sample of its own: unmeasured
            cpu_util_pct=sum(per_core) / len(per_core) if per_core and in_run else None,
            cpu_util_pct_per_core=[round(v, 1) for v in per_core] if in_run else [],
            cpu_freq_mhz_mean=sum(self._freqs) / len(self._freqs) if self._freqs else None,
            cpu_freq_mhz_min=min(self._freqs) if self._freqs else None,
            cpu_freq_mhz_max=max(self._freqs) if self._freqs else None,
            temps_c_max=self._temps,
            throttled=throttled,
            throttle_reasons=reasons,
            peak_rss_bytes=self._peak_rss or None,
            model_load_rss_bytes=model_load_rss_bytes,
        )
