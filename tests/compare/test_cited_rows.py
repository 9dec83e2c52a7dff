"""Every shipped cited row can be checked: it names the round it comes from and a URL to the
published figure."""

from __future__ import annotations

import re

import pytest

from collector.compare import shipped_baselines
from collector.records import CitedBaseline

ROUND = re.compile(r"\bMLPerf (Inference|Tiny|Training|HPC) v\d+\.\d+\b")
URL = re.compile(r"https://\S+")
RESULTS_REPO = re.compile(
    r"https://github\.com/mlcommons/(inference|tiny)_results_v(?P<round>\d+\.\d+)/blob/[0-9a-f]{40}/"
    r"(?P<division>closed|open)/"
)


def unsourced(row: CitedBaseline) -> list[str]:
    """What a cited row lacks to be checked: its round, its URL."""
    missing = []
    if not ROUND.search(row.source):
        missing.append("round")
    if not URL.search(row.source):
        missing.append("URL")
    return missing


def test_a_row_without_a_round_or_a_url_is_caught() -> None:
    bare = CitedBaseline(network="resnet50_v1", hardware="a GPU", scenario="offline",
                         source="MLCommons MLPerf Inference: Datacenter, closed division")
    assert unsourced(bare) == ["round", "URL"]
    no_url = bare.model_copy(update={"source": "MLPerf Inference v4.0, closed division"})
    assert unsourced(no_url) == ["URL"]


@pytest.mark.parametrize("row", shipped_baselines(), ids=lambda r: f"{r.network}-{r.hardware[:30]}")
def test_every_shipped_cited_row_names_its_round_and_a_url(row: CitedBaseline) -> None:
    assert unsourced(row) == [], row.source


@pytest.mark.parametrize("row", shipped_baselines(), ids=lambda r: f"{r.network}-{r.hardware[:30]}")
def test_a_results_repository_url_agrees_with_the_round_and_division_the_row_states(
    row: CitedBaseline,
) -> None:
    for url in RESULTS_REPO.finditer(row.source):
        assert f" v{url['round']}," in row.source or f" v{url['round']} " in row.source
        assert f"{url['division']} division" in row.source


def test_syntiants_rows_say_their_division_follows_the_results_path() -> None:
    rows = [r for r in shipped_baselines() if "submitter syntiant" in r.source]
    assert len(rows) == 3
    for row in rows:
        assert "closed division" in row.source and "/closed/syntiant/" in row.source
        assert row.notes is not None and '"Division": "Open"' in row.notes
