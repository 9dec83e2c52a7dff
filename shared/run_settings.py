"""What one benchmark run may be asked to do: the knobs a remote job sets, declared once.

:class:`RunSettings` is the single declaration of every run knob (scenario, timing, threads,
batch, power source, ...): its names, types, bounds, defaults and descriptions. Everything else is
derived from it:

* the wire: :class:`shared.messages.JobCommand` carries a ``RunSettings`` (``JobSettings`` is the
  same class), sending only the fields the sender set, so the agent's own defaults fill the rest;
* the agent: ``agent.config.BenchSettings`` extends it with what only the device knows (paths,
  identity, output, per-backend tables), and the daemon's ``[bench]`` table is that model;
* the command line: ``bench``, ``sweep`` and ``fleet run`` build their flags from the fields
  (:mod:`shared.settings_flags`), help text included, so a new field is a new flag everywhere.

A field given as ``null`` counts as not given (older senders wrote every unset knob as ``null``).
The power knobs are one nested table, ``power`` (``source``, ``hz``, ``idle_s``), which the agent
extends with one table per power source; the flat keys of old, ``power = "rapl"``, ``idle_s`` and
``power_hz``, are read into it everywhere (wire, flags, files).

Use::

    settings = RunSettings(scenario="offline", batch=4, power="none")
    settings.job_fields()        # {"scenario": "offline", "batch": 4, "power": "none"}: the wire
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.schema import Role, Scenario

__all__ = ["FLAT_POWER_KEYS", "PROFILE_HELP", "Flag", "Profile", "RunPower", "RunSettings",
           "fold_flat_power"]

Profile = Literal["quick", "standard", "sustained", "mlperf"]
Backend = Literal["auto", "onnxruntime", "litert"]

PROFILE_HELP = (
    "quick (>=1 s, 100 queries: a smoke test), standard (>=10 s, extended up to 3x while "
    "throughput is unsettled, and INVALID if still unsettled), sustained (until throughput and "
    "temperature settle, >=70 s, capped at 840 s or --duration-s: reports burst vs sustained "
    "throughput, the first throttle and the thermal trace), mlperf (LoadGen's minimums: >=600 s "
    "and its query counts). Only mlperf can be MLPerf-valid"
)


@dataclass(frozen=True)
class Flag:
    """How a field appears on the command line (read by :mod:`shared.settings_flags`).

    ``group`` is the heading it is listed under in ``--help``; ``name`` replaces the flag's name
    (default: the field name with dashes); ``metavar`` names its value.
    """

    group: str
    name: str | None = None
    metavar: str | None = None


#: the old flat keys of the power table: flat key -> key inside ``power``
FLAT_POWER_KEYS = {"idle_s": "idle_s", "power_hz": "hz"}


def fold_flat_power(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``None`` values dropped and the flat power keys moved into ``power``.

    ``power = "rapl"`` is the source; ``idle_s`` and ``power_hz`` are the table's ``idle_s`` and
    ``hz``. A ``power`` mapping already there is kept, the flat keys winning.
    """
    out = {k: v for k, v in data.items() if v is not None}
    flat = {key: out.pop(name) for name, key in FLAT_POWER_KEYS.items() if name in out}
    power = out.get("power")
    if isinstance(power, str):
        power = {"source": power}
    if flat:
        if isinstance(power, BaseModel):
            power = power.model_dump(exclude_unset=True)
        power = {**(power or {}), **flat}
    if power is not None:
        out["power"] = power
    return out


class RunPower(BaseModel):
    """``power``: the source that measures the run, its sampling rate and the idle baseline."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: Annotated[str, Flag("power", name="power", metavar="SOURCE")] = Field(
        "auto", pattern=r"^[a-z0-9_-]{1,32}$",
        description="power source: auto, none, or one of rapl, jetson, rpi5, nvml, tasmota, "
        "shelly, estimate")
    hz: Annotated[float, Flag("power", name="power-hz")] = Field(
        20.0, gt=0, le=1000, description="power sampling rate in Hz, capped at the source's maximum")
    idle_s: Annotated[float, Flag("power", name="idle-s")] = Field(
        3.0, ge=0, le=60, description="seconds of idle power baseline before the run (0 = none)")

    @model_validator(mode="before")
    @classmethod
    def _source_alone(cls, data: Any) -> Any:
        """``power = "rapl"`` names the source."""
        if isinstance(data, str):
            return {"source": data}
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data


class RunSettings(BaseModel):
    """The knobs of one benchmark run that anyone may set, a remote job included: no paths.

    Bounds keep one job from holding a board for hours by accident; the same bounds apply to the
    command line. Checks that need the whole picture (the server scenario needs a target rate)
    are the agent's, made once the device's own defaults are merged in.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    scenario: Annotated[Scenario, Flag("scenario")] = Field(
        Scenario.SINGLE_STREAM, description="MLPerf-style scenario")
    profile: Annotated[Profile, Flag("timing")] = Field("standard", description=PROFILE_HELP)
    iterations: Annotated[int | None, Flag("timing")] = Field(
        None, ge=1, le=10_000_000, description="timed queries (overrides the profile)")
    duration_s: Annotated[float | None, Flag("timing")] = Field(
        None, gt=0, le=3600, description="timed seconds (overrides the profile)")
    warmup: Annotated[int | None, Flag("timing")] = Field(
        None, ge=0, le=100_000, description="warm-up iterations (default: until stable)")
    fidelity: Annotated[int, Flag("timing")] = Field(
        32, ge=0, le=1024, description="fidelity inputs whose outputs are kept (0 = off)")
    threads: Annotated[int | None, Flag("runtime")] = Field(
        None, ge=1, le=256, description="runtime threads (default: all cores)")
    backend: Annotated[Backend, Flag("runtime")] = Field(
        "auto", description="inference runtime; auto picks it by the model file's format")
    seed: Annotated[int, Flag("runtime")] = Field(
        0, ge=0, le=2**31 - 1, description="seed for inputs and arrivals")
    batch: Annotated[int, Flag("scenario")] = Field(
        1, ge=1, le=1024, description="samples per inference call, where the model allows")
    streams: Annotated[int, Flag("scenario")] = Field(
        1, ge=1, le=64, description="parallel sessions (offline and server scenarios)")
    samples_per_query: Annotated[int, Flag("scenario")] = Field(
        8, ge=1, le=1024, description="samples per query (multi-stream scenario)")
    target_qps: Annotated[float | None, Flag("scenario")] = Field(
        None, gt=0, le=1_000_000, description="server scenario: Poisson arrival rate, queries/s")
    latency_bound_ms: Annotated[float | None, Flag("scenario")] = Field(
        None, gt=0, le=600_000, description="server scenario: the p99 latency bound for validity")
    role: Annotated[Role, Flag("identity")] = Field(
        Role.EDGE, description="edge, datacenter or hpc (baselines)")
    power: RunPower = Field(default_factory=RunPower, description="[power]: source, hz, idle_s")

    @model_validator(mode="before")
    @classmethod
    def _null_is_not_given(cls, data: Any) -> Any:
        """``null`` means not given; the flat power keys of old go into ``power``."""
        if isinstance(data, Mapping):
            return fold_flat_power(data)
        return data

    def job_fields(self) -> dict[str, Any]:
        """The fields this object was given, as JSON values, the way a job carries them.

        Unset fields are left out, so the agent's ``[bench]`` defaults fill them. The power table
        is sent flat (``power`` = source, ``idle_s``, ``power_hz``), which every agent reads.
        """
        given = self.model_fields_set & set(RunSettings.model_fields)
        out = self.model_dump(mode="json", include=given - {"power"})
        if "power" in given:
            power = self.power.model_dump(mode="json", include=self.power.model_fields_set)
            flat = {v: k for k, v in FLAT_POWER_KEYS.items()}
            for key, value in power.items():
                out["power" if key == "source" else flat.get(key, key)] = value
        return out
