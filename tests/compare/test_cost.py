"""Cost formulas against figures computed by hand (docs/compare.md)."""

from __future__ import annotations

import pytest

from collector.compare.cost import (
    CostSettings,
    amortised_usd_per_s,
    break_even_inferences,
    cloud_cost_per_million_usd,
    cost_per_million_usd,
    energy_usd_per_s,
)
from shared.errors import ConfigError


def test_cost_per_million_of_an_80_usd_board_at_5_w_and_100_sps() -> None:
    # lifetime: 3 y x 365.25 d x 86400 s = 94,672,800 s
    # amortised: 80 / 94,672,800             = 8.450157e-7 USD/s
    # energy:    5 W x 0.15 USD/kWh / 3.6e6 = 2.083333e-7 USD/s
    # sum 1.053349e-6 USD/s x 1e6 / 100 sps  = 0.01053349 USD per million inferences
    assert amortised_usd_per_s(80, 3) == pytest.approx(8.450157e-7, rel=1e-6)
    assert energy_usd_per_s(5, 0.15) == pytest.approx(2.083333e-7, rel=1e-6)
    cost = cost_per_million_usd(price_usd=80, lifetime_years=3, duty_cycle=1.0, avg_power_w=5,
                                tariff_usd_per_kwh=0.15, throughput_sps=100)
    assert cost == pytest.approx(0.01053349, rel=1e-6)


def test_duty_cycle_spreads_the_price_over_fewer_working_seconds() -> None:
    # duty 0.5: amortised doubles to 1.6900314e-6; + 2.083333e-7 = 1.8983647e-6 USD/s -> 0.018983647
    cost = cost_per_million_usd(price_usd=80, lifetime_years=3, duty_cycle=0.5, avg_power_w=5,
                                tariff_usd_per_kwh=0.15, throughput_sps=100)
    assert cost == pytest.approx(0.018983647, rel=1e-6)


def test_cloud_cost_per_million_at_an_hourly_price() -> None:
    # 0.526 USD/h / 3600 = 1.461111e-4 USD/s; x 1e6 / 1000 sps = 0.1461111 USD per million
    assert cloud_cost_per_million_usd(0.526, 1000) == pytest.approx(0.1461111, rel=1e-6)


def test_break_even_when_the_cloud_costs_more_per_inference() -> None:
    # edge energy per inference: 2.083333e-7 USD/s / 100 sps = 2.083333e-9 USD
    # cloud per inference:       1.461111e-4 USD/s / 1000 sps = 1.461111e-7 USD
    # break-even: 80 / (1.461111e-7 - 2.083333e-9) = 80 / 1.440278e-7 = 5.554484e8 inferences
    n = break_even_inferences(edge_price_usd=80, edge_avg_power_w=5, edge_throughput_sps=100,
                              tariff_usd_per_kwh=0.15, cloud_usd_per_hour=0.526,
                              cloud_throughput_sps=1000)
    assert n == pytest.approx(5.554484e8, rel=1e-6)


def test_no_break_even_when_the_cloud_is_cheaper_than_the_edge_energy() -> None:
    assert break_even_inferences(edge_price_usd=80, edge_avg_power_w=5, edge_throughput_sps=100,
                                 tariff_usd_per_kwh=0.15, cloud_usd_per_hour=1e-6,
                                 cloud_throughput_sps=1e6) is None


@pytest.mark.parametrize("kwargs", [
    {"tariff_usd_per_kwh": -0.1}, {"duty_cycle": 0.0}, {"duty_cycle": 1.5},
    {"lifetime_years": 0.0},
])
def test_cost_settings_reject_impossible_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CostSettings(**kwargs)
