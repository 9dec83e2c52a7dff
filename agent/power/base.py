"""The contract every power source follows, and the small helpers they share.

A source is a plugin behind one tiny interface (:class:`PowerSource`):

* ``probe()`` never raises: ``None`` when the source can be used here, else one line saying why not;
* ``open()`` prepares it (finds devices, connects to a broker) and raises
  :class:`shared.errors.PowerSourceError` with an actionable line when it cannot;
* ``read()`` returns a :class:`Reading` (a ``time.monotonic()`` timestamp and one value per rail),
  or ``None`` when there is nothing to report right now (no plug message yet, a stale value); it
  is called from the sampler thread and, at window edges, from the caller's: it is thread-safe;
* ``close()`` releases what ``open()`` took.

Each source declares what its figure covers (``scope``, a :class:`shared.schema.PowerScope`), its
``kind`` (``counter``: cumulative energy in joules, possibly wrapping at ``wrap_j``; ``gauge``:
instantaneous power in watts), the fastest rate it can deliver (``max_hz``), how often its value
actually changes (``update_period_s``) and which rails add up to its total (``counted_rails``; rails
outside it are reported but never added, so overlapping domains are never double counted).

Sampling, windows, integration and statistics live in :mod:`agent.power.sampler`, never in sources.

Hardware access goes through two seams so tests need no patching: every file is read through a
:class:`FileReader` under ``SourceConfig.sysfs_root``, and commands run through a
:data:`CommandRunner`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from shared.catalogue import HardwareEntry
from shared.schema import PowerScope

logger = logging.getLogger(__name__)

Kind = Literal["counter", "gauge"]
CommandRunner = Callable[[Sequence[str]], str]


class FileReader:
    """Reads sysfs and procfs files. Tests subclass it to raise what a non-root user would see."""

    def read_text(self, path: Path) -> str:
        # os.open/os.read: a quarter of the CPU of Path.read_text, which matters at 20 Hz
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.read(fd, 4096).decode("ascii", errors="replace")
        finally:
            os.close(fd)


def run_command(argv: Sequence[str]) -> str:
    """The default :data:`CommandRunner`: run ``argv`` and return its stdout (2 s timeout)."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=2.0, check=True
    )
    return done.stdout


@dataclass(frozen=True)
class SourceConfig:
    """Everything a source may need; each source takes the fields it uses."""

    sysfs_root: Path = Path("/")
    reader: FileReader = field(default_factory=FileReader)
    hardware: HardwareEntry | None = None
    cores_used: int | None = None
    mqtt_url: str | None = None
    power_topic: str | None = None
    rpi5_calibration: tuple[float, float] | None = None
    runner: CommandRunner = run_command
    nvml_module: Any = None  # a stand-in for pynvml (tests); None imports the real one

    def path(self, absolute: str) -> Path:
        """``absolute`` (e.g. ``/sys/class/powercap``) under the configured root."""
        return self.sysfs_root / absolute.lstrip("/")


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample. ``energy_j`` for counter sources (raw, may wrap), ``power_w`` for gauges."""

    t_s: float
    energy_j: Mapping[str, float] | None = None
    power_w: Mapping[str, float] | None = None

    @property
    def values(self) -> Mapping[str, float]:
        return self.energy_j if self.energy_j is not None else (self.power_w or {})


class PowerSource(ABC):
    """One way to measure (or estimate) power. See the module docstring for the contract."""

    name: ClassVar[str]
    scope: PowerScope
    estimated: ClassVar[bool] = False
    kind: Kind = "gauge"
    max_hz: float = 100.0
    update_period_s: float = 0.0
    #: counter sources whose read() is cheap and thread-safe: begin()/end() read them on the
    #: caller's thread so the window edges are exact
    edge_snapshot: bool = False

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.counted_rails: tuple[str, ...] = ()
        self.wrap_j: dict[str, float] = {}

    @abstractmethod
    def probe(self) -> str | None:
        """``None`` when usable here, else why not (one line). Never raises."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare for reading; raise PowerSourceError with an actionable line if impossible."""

    @abstractmethod
    def read(self) -> Reading | None:
        """One sample now, or None when the source has nothing current."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what open() took. Idempotent."""


class OnceLogger:
    """Says a warning once per condition (key), however often it recurs."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._said: set[str] = set()

    def warning(self, key: str, msg: str, *args: object) -> None:
        if key in self._said:
            return
        self._said.add(key)
        self._log.warning(msg, *args)


def stamp(before: float) -> float:
    """Timestamp of a reading that started at ``before``: the middle of the read."""
    return (before + time.monotonic()) / 2.0


def read_str(config: SourceConfig, path: Path) -> str | None:
    """The stripped text of ``path``, or None if missing. PermissionError propagates."""
    try:
        return config.reader.read_text(path).strip()
    except PermissionError:
        raise
    except OSError:
        return None


def read_float(config: SourceConfig, path: Path) -> float | None:
    text = read_str(config, path)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
