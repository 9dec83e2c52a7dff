"""Cost arithmetic: amortised hardware, energy at a tariff, the cloud alternative, break-even.

Every function is pure and takes plain numbers in the units its argument names carry, so the
formulas in ``docs/compare.md`` can be checked by hand against the tests:

* amortised USD/s = price_usd / (lifetime_years x 365.25 x 86400 x duty_cycle)
* energy USD/s = avg_power_w x tariff_usd_per_kwh / 3.6e6
* cost per million inferences = (amortised USD/s + energy USD/s) x 1e6 / throughput_sps
* cloud cost per million inferences = cloud_usd_per_hour / 3600 x 1e6 / throughput_sps
* break-even inferences = edge price / (cloud USD per inference - edge energy USD per inference),
  or ``None`` when the cloud is at least as cheap per inference as the edge device's energy alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.errors import ConfigError

SECONDS_PER_YEAR = 365.25 * 86400
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class CostSettings:
    """The knobs of the cost model (``edgemeter compare`` flags)."""

    tariff_usd_per_kwh: float = 0.15
    duty_cycle: float = 1.0
    """fraction of its lifetime a device spends running inferences (0 < d <= 1)"""
    lifetime_years: float | None = None
    """amortisation period for every device; ``None`` takes each catalogue entry's own"""

    def __post_init__(self) -> None:
        if not math.isfinite(self.tariff_usd_per_kwh) or self.tariff_usd_per_kwh < 0:
            raise ConfigError(f"tariff must be >= 0 USD/kWh, got {self.tariff_usd_per_kwh}")
        if not 0 < self.duty_cycle <= 1:
            raise ConfigError(f"duty cycle must be in (0, 1], got {self.duty_cycle}")
        if self.lifetime_years is not None and not self.lifetime_years > 0:
            raise ConfigError(f"lifetime must be > 0 years, got {self.lifetime_years}")


def amortised_usd_per_s(price_usd: float, lifetime_years: float, duty_cycle: float = 1.0) -> float:
    """Hardware price spread over the seconds it spends working during its lifetime."""
    return price_usd / (lifetime_years * SECONDS_PER_YEAR * duty_cycle)


def energy_usd_per_s(avg_power_w: float, tariff_usd_per_kwh: float) -> float:
    """What running at ``avg_power_w`` costs per second (1 kWh = 3.6e6 J)."""
    return avg_power_w * tariff_usd_per_kwh / JOULES_PER_KWH


def cost_per_million_usd(
    *,
    price_usd: float,
    lifetime_years: float,
    duty_cycle: float,
    avg_power_w: float,
    tariff_usd_per_kwh: float,
    throughput_sps: float,
) -> float:
    """Owning and powering a device, per million inferences at ``throughput_sps``."""
    usd_per_s = amortised_usd_per_s(price_usd, lifetime_years, duty_cycle) + energy_usd_per_s(
        avg_power_w, tariff_usd_per_kwh
    )
    return usd_per_s * 1e6 / throughput_sps


def cloud_cost_per_million_usd(cloud_usd_per_hour: float, throughput_sps: float) -> float:
    """Renting the hardware by the hour, per million inferences at ``throughput_sps``."""
    return cloud_usd_per_hour / 3600.0 * 1e6 / throughput_sps


def break_even_inferences(
    *,
    edge_price_usd: float,
    edge_avg_power_w: float,
    edge_throughput_sps: float,
    tariff_usd_per_kwh: float,
    cloud_usd_per_hour: float,
    cloud_throughput_sps: float,
) -> float | None:
    """Inferences after which buying the edge device costs less than renting the cloud baseline.

    Owning N inferences costs ``price + N x edge energy per inference``; renting costs
    ``N x cloud price per inference``. ``None`` when renting is never dearer (the cloud's cost per
    inference does not exceed the edge device's energy per inference).
    """
    edge_energy_usd = energy_usd_per_s(edge_avg_power_w, tariff_usd_per_kwh) / edge_throughput_sps
    cloud_usd = cloud_usd_per_hour / 3600.0 / cloud_throughput_sps
    saving = cloud_usd - edge_energy_usd
    if saving <= 0:
        return None
    return edge_price_usd / saving
