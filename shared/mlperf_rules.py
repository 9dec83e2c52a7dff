"""The run rules as cited data: MLPerf LoadGen's per-scenario minimums and edgemeter's profiles.

The figures live in ``shared/mlperf_rules.toml``, each with its source; this module only reads and
checks them. :func:`load_rules` refuses a figure without a citation, so a number from somebody
else's rule book cannot slip into the file unexplained.

A profile either carries its own minimum duration and query count (``quick``, ``standard``) or,
with ``mlperf = true``, takes LoadGen's per-scenario figures. Only such a profile can ever produce
an MLPerf-valid result.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError
from shared.schema import Scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib


class _Cited(BaseModel):
    """Every figure set in the file names its source in ``sources``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_figure_cited(self) -> _Cited:
        figures = {
            name for name in type(self).model_fields
            if name not in ("sources", "mlperf") and getattr(self, name) is not None
        }
        uncited = sorted(f for f in figures if not self.sources.get(f, "").strip())
        if uncited:
            raise ValueError(f"no source for {', '.join(uncited)}")
        stray = sorted(set(self.sources) - figures)
        if stray:
            raise ValueError(f"source given for unknown or unset figure(s) {', '.join(stray)}")
        return self


class EarlyStoppingRule(_Cited):
    confidence: float = Field(gt=0, lt=1)
    tolerance: float = Field(ge=0, lt=1)


class ScenarioRule(_Cited):
    min_duration_s: float = Field(gt=0)
    min_query_count: int = Field(ge=1)
    early_stop_percentile: float | None = Field(None, gt=0, lt=1)
    also_estimated_percentile: float | None = Field(
        None, gt=0, lt=1, description="estimated and reported too, never judged"
    )
    min_completed_ratio: float | None = Field(
        None, gt=0, le=1, description="server: completed rate / scheduled rate a run must reach"
    )


class ProfileRule(_Cited):
    mlperf: bool = False
    min_duration_s: float | None = Field(None, gt=0)
    min_query_count: int | None = Field(None, ge=1)
    max_duration_factor: float | None = Field(
        None, ge=1, description="an unstable run is extended up to this multiple of its minimum"
    )

    @model_validator(mode="after")
    def _own_figures_or_mlperf(self) -> ProfileRule:
        own = self.min_duration_s is not None and self.min_query_count is not None
        if self.mlperf == own:
            raise ValueError(
                "a profile sets min_duration_s and min_query_count, or mlperf = true, not both"
            )
        return self


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    early_stopping: EarlyStoppingRule
    scenario: dict[Scenario, ScenarioRule]
    profile: dict[str, ProfileRule]

    @model_validator(mode="after")
    def _every_scenario(self) -> Rules:
        missing = sorted(s.value for s in Scenario if s not in self.scenario)
        if missing:
            raise ValueError(f"no rule for scenario(s) {', '.join(missing)}")
        return self

    def profile_rule(self, profile: str) -> ProfileRule:
        try:
            return self.profile[profile]
        except KeyError as err:
            known = ", ".join(sorted(self.profile))
            raise ConfigError(f"unknown profile {profile!r}; known profiles: {known}") from err

    def min_duration_s(self, profile: str, scenario: Scenario) -> float:
        rule = self.profile_rule(profile)
        if rule.min_duration_s is not None:
            return rule.min_duration_s
        return self.scenario[scenario].min_duration_s

    def min_query_count(self, profile: str, scenario: Scenario) -> int:
        rule = self.profile_rule(profile)
        if rule.min_query_count is not None:
            return rule.min_query_count
        return self.scenario[scenario].min_query_count

    def early_stop_percentiles(self, scenario: Scenario) -> tuple[float, ...]:
        """The percentile a scenario is judged by (its early-stopping estimate must exist)."""
        pct = self.scenario[scenario].early_stop_percentile
        return () if pct is None else (pct,)

    def reported_percentiles(self, scenario: Scenario) -> tuple[float, ...]:
        """Every early-stopping estimate a scenario reports: the judged one, then any other."""
        extra = self.scenario[scenario].also_estimated_percentile
        return self.early_stop_percentiles(scenario) + (() if extra is None else (extra,))


def parse_rules(text: str, origin: str = "shipped") -> Rules:
    """Rules from TOML text; any problem is a :class:`ConfigError` naming the figure."""
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"mlperf rules {origin} are not valid TOML: {err}") from err
    try:
        return Rules.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"mlperf rules {origin}: {where}: {first['msg']}") from err


@cache
def load_rules() -> Rules:
    """The shipped rules (read once per process)."""
    text = resources.files("shared").joinpath("mlperf_rules.toml").read_text(encoding="utf-8")
    return parse_rules(text)
