"""A bounded schemathesis run against the live API: every operation of the OpenAPI document is
called with generated (valid and invalid) requests, with and without the token, on a collector
app over a temporary SQLite store, and every answer must be one the document lists, of the listed
shape, and never a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from collector.config import HttpSettings  # noqa: E402
from collector.events import EventBus  # noqa: E402
from collector.http.app import create_app  # noqa: E402
from collector.http.store import open_read_store  # noqa: E402
from collector.metrics import CollectorMetrics  # noqa: E402
from collector.stores.base import open_store  # noqa: E402
from shared.messages import AgentManifest, Status  # noqa: E402
from shared.schema import DeviceManifest  # noqa: E402
from tests.factories import make_result  # noqa: E402
from tests.http.conftest import TOKEN  # noqa: E402

MAX_EXAMPLES = 12
#: an endless stream: its 200 never ends, so it is not fuzzed (tests/http/test_app.py covers it)
SKIPPED_PATHS = ("/api/events",)
#: "a schema-valid request must be accepted": a page cursor is an opaque string the server gave
#: out, so a made-up one is refused (400) although it fits the document
EXCLUDED_CHECKS = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{folder}/results.db"
    writer = open_store(url)
    result = make_result(device_id="pi-01", fleet="lab")
    writer.add_results([result])
    writer.record_status(Status(device_id="pi-01", fleet="lab", status="online", bd_seq=1,
                                sent_at=result.created_at,
                                manifest=AgentManifest(agent_version="1",
                                                       device=DeviceManifest(hostname="pi-01"))),
                         result.created_at)
    writer.add_model("m.tflite", b"TFL3" + bytes(64))
    writer.close()
    reader = open_read_store(url)
    app = create_app(reader, events=EventBus(), metrics=CollectorMetrics(),
                     publisher=lambda _topic, _payload: None,
                     settings=HttpSettings(listen="127.0.0.1:8080", token=TOKEN,
                                           allowed_hosts=["testserver"]))  # the test client
    yield app
    reader.close()


@pytest.mark.slow  # a real model or a live server for seconds: make test, not test-fast
def test_every_answer_is_one_the_document_lists(fuzzed_app: Any) -> None:
    api = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    failures: list[str] = []
    operations = 0
    for found in api.get_all_operations():
        operation = found.ok()
        if operation.path in SKIPPED_PATHS:
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)

        try:
            call()
        except BaseException as err:  # schemathesis' failure group: report all at once
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            failures.append(f"{operation.method.upper()} {operation.path}: {err}")
    assert operations >= 8
    assert not failures, "\n\n".join(failures)
