"""Dashboard papercuts a new user met: a run opened by the short id the results table prints, the
parameters of a small model, the validity warnings and stability verdict, and ratios far below 1."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.schema import (
    DeviceManifest,
    RunSpec,
    RunSpecPair,
    Stability,
    StabilityWindow,
    Validity,
)
from tests.browser.conftest import Dashboard, assert_clean
from tests.browser.test_dashboard import birth, expect, result
from tests.factories import make_result

pytestmark = pytest.mark.slow


def test_a_run_opens_by_its_short_id_and_shows_small_params_warnings_and_stability(
    dashboard: Dashboard, page: Any,
) -> None:
    birth(dashboard, "pi5-short")
    windows = [StabilityWindow(start_s=i * 2.0, queries=100, throughput_sps=50.0 + 20 * (i % 2),
                               p50_ms=2.0) for i in range(5)]
    small = make_result(model_name="kws_dscnn_int8.tflite").model.model_copy(update={"params": 21_432})
    res = result(dashboard, "pi5-short", seq=0, model=small,
                 stability=Stability(warmup_iterations=10, warmup_settled=True, windows=windows,
                                     throughput_cv=0.19, stable=False, cv_limit=0.1),
                 validity=Validity(valid=True, custom="custom: below the standard profile's "
                                   "10 s / 100 queries", profile_minimums_met=False,
                                   warnings=["outputs do not depend on the input"]))
    dashboard.wait_stored("pi5-short", runs=1)
    page.goto(f"{dashboard.url}/#/run/{str(res.run_id)[:8]}")
    main = page.locator("main")
    expect(main).to_contain_text("kws_dscnn_int8.tflite on pi5-short", timeout=10_000)
    expect(main).to_contain_text("21,432")
    expect(main).to_contain_text("custom: below the standard profile's 10 s / 100 queries")
    expect(main).to_contain_text("warning: outputs do not depend on the input")
    expect(main).to_contain_text("unstable (throughput CV 19 % over 5 windows, limit 10 %)")
    assert_clean(page)


def test_compare_ratios_far_below_one_keep_their_digits(dashboard: Dashboard, page: Any) -> None:
    model = "vww_96_int8.tflite"
    birth(dashboard, "pi5-ratio")
    result(dashboard, "pi5-ratio", model_name=model, network="vww_96", throughput_sps=15.0)
    slice_of_a_server = DeviceManifest(hostname="vm", hardware_key="xeon-8380-2s", cpu_cores=2)
    result(dashboard, "gpu-ratio", model_name=model, network="vww_96", role="datacenter",
           throughput_sps=4000.0, device=slice_of_a_server,
           spec=RunSpecPair(requested=RunSpec(), effective=RunSpec(threads=2)))
    dashboard.wait_stored("pi5-ratio", runs=1)
    dashboard.wait_stored("gpu-ratio", runs=1)
    page.goto(f"{dashboard.url}/#/compare?model={model}")
    table = page.locator("table.pairs")
    times = "\u00d7"  # the multiplication sign the page writes after a ratio
    expect(table).to_contain_text(f"0.00375{times}", timeout=10_000)  # 15 / 4000, not zero
    expect(table.locator("td", has_text=re.compile(rf"^0{times}$"))).to_have_count(0)
    expect(table).to_contain_text("gpu-ratio: 1.3 % of xeon-8380-2s charged")  # 2 of 160 cores
    assert_clean(page)
