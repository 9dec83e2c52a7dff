"""The contract every power source follows, and the small helpers they share.

A source is a plugin behind one tiny interface (:class:`PowerSource`):

* ``probe()`` never raises: ``None`` when the source can be used here, else one line saying why not;
* ``open()`` prepares it (finds devices, connects to a broker) and raises
  :class:`shared.errors.PowerSourceError` with an actionable line when it cannot;
* ``read()`` returns a :class:`Reading` (a timestamp from ``context.clock_ns``, in seconds, and one
  value per rail), or ``None`` when there is nothing to report right now (no plug message yet, a
  stale value); it is called from the sampler thread and, at window edges, from the caller's: it is thread-safe;
* ``close()`` releases what ``open()`` took.

Each source declares what its figure covers (``scope``, a :class:`shared.schema.PowerScope`), its
``kind`` (``counter``: cumulative energy in joules, possibly wrapping at ``wrap_j``; ``gauge``:
instantaneous power in watts), the fastest rate it can deliver (``max_hz``), how often its value
actually changes (``update_period_s``) and which rails add up to its total (``counted_rails``; rails
outside it are reported but never added, so overlapping domains are never double counted).

Sampling, windows, integration and statistics live in :mod:`agent.power.sampler`, never in sources.

Settings: every source declares its own pydantic model, ``Settings`` (a :class:`SourceSettings`:
unknown keys are errors), read from its table ``[power.NAME]`` of the agent's config file; the
constructor takes ``(settings, context)``, where :class:`SourceContext` carries what the run knows
(the hardware catalogue entry, the cores the benchmark uses) and the clock readings are stamped
with. Adding a source touches its own module and :data:`agent.power.registry.SOURCES`, nothing else.

Hardware access goes through seams, constructor keywords, so tests need no patching: files are read
through a :class:`FileReader` under the source's ``root``, commands run through a
:data:`CommandRunner`, time comes from ``context.clock_ns``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.power.clock import ClockNs
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


class SourceSettings(BaseModel):
    """The base of every source's own settings (its ``[power.NAME]`` table). Unknown keys fail."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RootSettings(SourceSettings):
    """Settings of a source that reads sysfs/procfs files."""

    root: Path = Field(Path("/"), description="filesystem root the sysfs files are read under")

    def path(self, absolute: str) -> Path:
        """``absolute`` (e.g. ``/sys/class/powercap``) under the configured root."""
        return self.root / absolute.lstrip("/")


@dataclass(frozen=True)
class SourceContext:
    """What the run knows that a source may use. Facts and the clock, not user settings."""

    hardware: HardwareEntry | None = None
    cores_used: int | None = None
    clock_ns: ClockNs = time.monotonic_ns

    def now_s(self) -> float:
        return self.clock_ns() / 1e9


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

    Settings: ClassVar[type[SourceSettings]] = SourceSettings
    #: lines for the energy block's ``notes`` (what the figure covers, how it was scaled)
    notes: tuple[str, ...] = ()

    def __init__(
        self, settings: SourceSettings | None = None, context: SourceContext | None = None
    ) -> None:
        self.settings = settings if settings is not None else self.Settings()
        self.context = context if context is not None else SourceContext()
        self.counted_rails: tuple[str, ...] = ()
        self.wrap_j: dict[str, float] = {}

    @classmethod
    def from_table(
        cls, table: SourceSettings | Mapping[str, Any] | None, context: SourceContext | None = None
    ) -> PowerSource:
        """The source built from its settings table (a validated model or a raw mapping)."""
        if table is None or isinstance(table, SourceSettings):
            return cls(table, context)
        return cls(cls.Settings.model_validate(dict(table)), context)

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


def stamp(clock_ns: ClockNs, before_ns: int) -> float:
    """Timestamp in seconds of a reading that started at ``before_ns``: the middle of the read."""
    return (before_ns + clock_ns()) / 2e9


def read_str(reader: FileReader, path: Path) -> str | None:
    """The stripped text of ``path``, or None if missing. PermissionError propagates."""
    try:
        return reader.read_text(path).strip()
    except PermissionError:
        raise
    except OSError:
        return None


def read_float(reader: FileReader, path: Path) -> float | None:
    text = read_str(reader, path)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
