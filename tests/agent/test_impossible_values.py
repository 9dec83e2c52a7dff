"""What the wire schema refuses never comes out of the agent: non-finite outputs, negative gauge
noise and an unset clock are each handled where they arise."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from agent.fidelity import fingerprint
from agent.power.base import Reading
from agent.power.sampler import _without_negative_power
from agent.runner import check_clock
from shared.errors import ConfigError
from shared.schema import OutputFingerprint


def test_non_finite_outputs_become_finite_and_are_counted() -> None:
    logits = np.array([0.0, -np.inf, np.nan, 2.0, np.inf])
    fp = fingerprint(logits, seed=0)
    OutputFingerprint.model_validate_json(fp.model_dump_json())
    assert fp.non_finite == 3
    assert fp.top_k[:2] == [4, 3]
    big = np.full(1000, -np.inf)
    sketch = fingerprint(big, seed=0)
    assert sketch.sketch is not None and all(np.isfinite(sketch.sketch))
    assert sketch.non_finite == 1000


def test_a_gauge_reading_a_hair_below_zero_counts_as_zero_watts() -> None:
    reading = Reading(t_s=1.0, power_w={"vdd_in": -0.004, "vdd_cpu": 1.5})
    assert dict(_without_negative_power(reading).power_w or {}) == {"vdd_in": 0.0, "vdd_cpu": 1.5}
    counter = Reading(t_s=1.0, energy_j={"package-0": 12.0})
    assert _without_negative_power(counter) is counter


def test_a_board_whose_clock_says_1970_refuses_to_measure() -> None:
    with pytest.raises(ConfigError, match="clock says 1970-01-01"):
        check_clock(datetime(1970, 1, 1, tzinfo=timezone.utc))
    check_clock(datetime(2026, 12, 2, tzinfo=timezone.utc))
