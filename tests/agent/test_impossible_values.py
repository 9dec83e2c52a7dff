"""What the wire schema refuses never comes out of the agent: non-finite outputs, negative gauge
noise and an unset clock are each handled where they arise."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from agent.fidelity import digest_output
from agent.power.base import Reading
from agent.power.sampler import _without_negative_power
from agent.runner import check_clock
from shared.errors import ConfigError
from shared.schema import OutputDigest


def test_non_finite_outputs_become_finite_and_are_counted() -> None:
    logits = np.array([0.0, -np.inf, np.nan, 2.0, np.inf])
    small = digest_output([logits], seed=0)
    OutputDigest.model_validate_json(small.model_dump_json())
    assert small.non_finite == 3
    assert small.fingerprints(k=5)[0].top_k[:2] == [4, 3]
    big = digest_output([np.full(1000, -np.inf)], seed=0)
    OutputDigest.model_validate_json(big.model_dump_json())
    assert big.sketch is not None and all(np.isfinite(big.sketch[0]))
    assert big.top_scores is not None and all(np.isfinite(big.top_scores[0]))
    assert big.non_finite == 1000


def test_a_gauge_reading_a_hair_below_zero_counts_as_zero_watts() -> None:
    reading = Reading(t_s=1.0, power_w={"vdd_in": -0.004, "vdd_cpu": 1.5})
    assert dict(_without_negative_power(reading).power_w or {}) == {"vdd_in": 0.0, "vdd_cpu": 1.5}
    counter = Reading(t_s=1.0, energy_j={"package-0": 12.0})
    assert _without_negative_power(counter) is counter


def test_a_board_whose_clock_says_1970_refuses_to_measure() -> None:
    with pytest.raises(ConfigError, match="clock says 1970-01-01"):
        check_clock(datetime(1970, 1, 1, tzinfo=timezone.utc))
    check_clock(datetime(2026, 12, 2, tzinfo=timezone.utc))
