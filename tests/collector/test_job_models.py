"""A job sent by `fleet run --model FILE` (the collector only sees its acks) shows its model,
taken from the result it produced."""

from __future__ import annotations

from collector.stores.sql import SqlStore
from tests.collector.test_stores_fleet import ack, at, clock, fleet_store  # noqa: F401 - fixtures
from tests.factories import make_result


def test_a_job_known_only_by_its_acks_takes_its_model_from_its_result(
    fleet_store: SqlStore,  # noqa: F811 - the fixture
) -> None:
    result = make_result(device_id="pi-01", fleet="lab", model_name="kws_dscnn_int8.tflite")
    fleet_store.add_results([result])
    fleet_store.record_ack(ack("cli-job", "done", 3, run_id=result.run_id), at(4))
    fleet_store.record_ack(ack("cli-job-2", "running", 3), at(4))
    by_id = {r.job_id: r for r in fleet_store.list_jobs(device_id="pi-01")}
    assert by_id["cli-job"].model_name == "kws_dscnn_int8.tflite"
    assert by_id["cli-job"].model_sha256 == result.model.sha256
    assert by_id["cli-job-2"].model_name is None  # no result yet: nothing to tell
