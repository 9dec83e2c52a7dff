"""/api/runs/{id} takes the short id the results table prints (the dashboard's #/run/<short id>)."""

from __future__ import annotations

import uuid

from tests.factories import make_result
from tests.http.conftest import Api


def test_a_run_is_found_by_the_first_eight_digits_of_its_id(api: Api) -> None:
    result = make_result(seq=1)
    api.writer.add_results([result])
    short = str(result.run_id)[:8]
    body = api.client.get(f"/api/runs/{short}").json()
    assert body["result"]["run_id"] == str(result.run_id)
    dashed = str(result.run_id)[:13]  # across the first dash
    assert api.client.get(f"/api/runs/{dashed}").json()["result"]["run_id"] == str(result.run_id)


def test_a_short_id_two_runs_share_asks_for_more_digits(api: Api) -> None:
    first = make_result(seq=1, run_id=uuid.UUID("abcdef12-0000-4000-8000-000000000001"))
    second = make_result(seq=2, run_id=uuid.UUID("abcdef12-0000-4000-8000-000000000002"))
    api.writer.add_results([first, second])
    response = api.client.get("/api/runs/abcdef12")
    assert response.status_code == 409
    assert "several runs start with 'abcdef12'" in response.json()["error"]
    assert api.client.get("/api/runs/abcdef12-0000-4000-8000-000000000002").status_code == 200


def test_too_short_or_unknown_short_ids_are_404(api: Api) -> None:
    result = make_result(seq=1)
    api.writer.add_results([result])
    assert api.client.get(f"/api/runs/{str(result.run_id)[:4]}").status_code == 404
    assert api.client.get("/api/runs/00000000").status_code == 404
    assert api.client.get("/api/runs/not-hex%25").status_code == 404
