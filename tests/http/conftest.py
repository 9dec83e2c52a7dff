"""An HTTP API on a real store (SQLite and PostgreSQL), served by uvicorn on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.config import HttpSettings
from collector.events import EventBus
from collector.http import HttpServer, ReadStore, create_app, open_read_store
from collector.metrics import CollectorMetrics
from collector.stores.base import Store, open_store

TOKEN = "s3cret-token"


@dataclass
class Api:
    """A running API: its client, the store ingest writes to, the bus and what was published."""

    client: httpx.Client
    url: str
    writer: Store
    reader: ReadStore
    events: EventBus
    metrics: CollectorMetrics
    server: HttpServer
    published: list[tuple[str, bytes]] = field(default_factory=list)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/results.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def make_api(db_url: str) -> Iterator[Callable[..., Api]]:
    """``make_api(listen=..., token=..., static_dir=..., device_cache_s=..., publisher=...,
    **other [http] settings)``:
    a served app whose policy follows ``listen`` (it is
    always served on 127.0.0.1, so a test can play an exposed server safely)."""
    writer = open_store(db_url)
    opened: list[tuple[HttpServer, ReadStore, httpx.Client]] = []

    def make(listen: str = "127.0.0.1:8080", token: str | None = None,
             static_dir: Path | None = None, device_cache_s: float = 0.0,
             publisher: Callable[[str, bytes], None] | None = None, **settings: Any) -> Api:
        reader = open_read_store(db_url)
        events, metrics = EventBus(), CollectorMetrics()
        published: list[tuple[str, bytes]] = []
        app = create_app(reader, events=events, metrics=metrics,
                         publisher=publisher or (lambda topic, payload:
                                                 published.append((topic, payload))),
                         settings=HttpSettings(listen=listen, token=token, **settings),
                         device_cache_s=device_cache_s,
                         **({"static_dir": static_dir} if static_dir else {}))
        server = HttpServer(app, "127.0.0.1", 0)
        server.start()
        client = httpx.Client(base_url=server.url, timeout=10)
        opened.append((server, reader, client))
        return Api(client, server.url, writer, reader, events, metrics, server, published)

    yield make
    for server, reader, client in opened:
        client.close()
        server.stop()
        reader.close()
    writer.close()


@pytest.fixture()
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
