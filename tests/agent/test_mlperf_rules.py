"""The run rules as cited data: shared/mlperf_rules.toml and its loader."""

from __future__ import annotations

from importlib import resources

import pytest

from shared.errors import ConfigError
from shared.mlperf_rules import _Cited, load_rules, parse_rules
from shared.schema import Scenario


def _figures(block: _Cited) -> dict[str, object]:
    return {
        name: getattr(block, name) for name in type(block).model_fields
        if name not in ("sources", "mlperf") and getattr(block, name) is not None
    }


def test_mlperf_profile_takes_current_loadgen_minimums() -> None:
    rules = load_rules()
    # LoadGen 6.0 mlperf.conf: 600 s everywhere, 662 multi-stream queries (not the old 270,336)
    assert {s: rules.min_duration_s("mlperf", s) for s in Scenario} == dict.fromkeys(Scenario, 600.0)
    assert rules.min_query_count("mlperf", Scenario.MULTI_STREAM) == 662
    assert rules.min_query_count("mlperf", Scenario.SERVER) == 100
    assert rules.min_query_count("mlperf", Scenario.OFFLINE) == 1


def test_early_stopping_percentiles_per_scenario_follow_loadgen() -> None:
    rules = load_rules()
    assert rules.early_stop_percentiles(Scenario.SINGLE_STREAM) == (0.90,)
    assert rules.early_stop_percentiles(Scenario.MULTI_STREAM) == (0.99,)
    assert rules.early_stop_percentiles(Scenario.SERVER) == (0.99,)
    assert rules.early_stop_percentiles(Scenario.OFFLINE) == ()
    assert rules.early_stopping.confidence == 0.99


def test_edgemeter_profiles_keep_their_own_figures() -> None:
    rules = load_rules()
    assert rules.min_duration_s("quick", Scenario.SERVER) == 1.0
    assert rules.min_duration_s("standard", Scenario.OFFLINE) == 10.0
    assert rules.profile_rule("standard").max_duration_factor == 3.0
    assert [name for name, p in rules.profile.items() if p.mlperf] == ["mlperf"]


def test_every_shipped_figure_names_its_source() -> None:
    rules = load_rules()
    blocks: list[_Cited] = [rules.early_stopping, *rules.scenario.values(), *rules.profile.values()]
    for block in blocks:
        for name in _figures(block):
            assert block.sources[name].strip(), name
    for rule in rules.scenario.values():
        assert all("LoadGen" in source for source in rule.sources.values())


def _shipped() -> str:
    return resources.files("shared").joinpath("mlperf_rules.toml").read_text(encoding="utf-8")


def test_a_figure_without_a_source_is_refused() -> None:
    text = _shipped().replace(
        'min_query_count = "LoadGen 6.0.17 loadgen/mlperf.conf: *.MultiStream.min_query_count = 662"\n',
        "",
    )
    with pytest.raises(ConfigError, match=r"scenario\.multi-stream.*no source for min_query_count"):
        parse_rules(text)


def test_a_missing_scenario_and_an_unknown_profile_are_errors() -> None:
    start = _shipped().index("[scenario.offline]")
    end = _shipped().index("[profile.quick]")
    with pytest.raises(ConfigError, match="offline"):
        parse_rules(_shipped()[:start] + _shipped()[end:])
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        load_rules().profile_rule("fast")
