"""Models for jobs: fetched by sha256 over HTTP, verified before use, kept in a bounded LRU cache."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import ModelFetchError
from agent.model_cache import ModelCache
from shared.messages import ModelRef


class Server:
    """A real HTTP server on loopback standing in for the collector's ``/models/{sha256}``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = outer.files.get(self.path.rsplit("/", 1)[-1])
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                if body is not None:
                    self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, content: bytes, name: str = "m.tflite", served: bytes | None = None) -> ModelRef:
        sha = hashlib.sha256(content).hexdigest()
        self.files[sha] = content if served is None else served
        return ModelRef(sha256=sha, name=name, size_bytes=len(content))


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.httpd.shutdown()


def test_a_model_is_fetched_once_verified_and_kept(server: Server, tmp_path: Path) -> None:
    ref = server.add(os.urandom(2000))
    cache = ModelCache(tmp_path / "cache", models_url=server.url)
    path = cache.get(ref)
    assert path == tmp_path / "cache" / f"{ref.sha256}.tflite"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    cache.get(ref)
    assert server.requests == 1
    assert (path.parent.stat().st_mode & 0o077) == 0


def test_a_download_with_the_wrong_checksum_is_refused_and_not_kept(server: Server, tmp_path: Path) -> None:
    ref = server.add(b"the real model", served=b"something else entirely")
    cache = ModelCache(tmp_path / "cache", models_url=server.url)
    with pytest.raises(ModelFetchError, match="refused"):
        cache.get(ref)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_unknown_sha256_says_to_add_the_model_to_the_collector(server: Server, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", models_url=server.url)
    with pytest.raises(ModelFetchError, match="edgemeter models add"):
        cache.get(ModelRef(sha256="c" * 64, name="x.onnx"))


def test_a_model_larger_than_the_cache_is_refused(server: Server, tmp_path: Path) -> None:
    ref = server.add(os.urandom(5000))
    cache = ModelCache(tmp_path / "cache", models_url=server.url, max_bytes=4000)
    with pytest.raises(ModelFetchError, match="larger than the model cache"):
        cache.get(ref)
    unsized = ModelRef(sha256=ref.sha256, name=ref.name)  # the size is only found while streaming
    with pytest.raises(ModelFetchError, match="larger than the model cache"):
        cache.get(unsized)


def test_the_least_recently_used_model_is_evicted_past_the_limit(server: Server, tmp_path: Path) -> None:
    refs = [server.add(os.urandom(1000), name=f"m{i}.onnx") for i in range(3)]
    cache = ModelCache(tmp_path / "cache", models_url=server.url, max_bytes=2500)
    first = cache.get(refs[0])
    second = cache.get(refs[1])
    os.utime(first, (1, 1))  # used long ago
    os.utime(second, (2, 2))
    cache.get(refs[2])
    kept = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert kept == sorted([second.name, f"{refs[2].sha256}.onnx"])


def test_a_cached_file_that_no_longer_matches_is_fetched_again(server: Server, tmp_path: Path) -> None:
    ref = server.add(b"model bytes")
    cache = ModelCache(tmp_path / "cache", models_url=server.url)
    cache.get(ref).write_bytes(b"tampered")
    assert cache.get(ref).read_bytes() == b"model bytes"
    assert server.requests == 2


def test_the_models_token_is_sent_to_a_collector_that_wants_it(tmp_path: Path) -> None:
    """Against the collector's own app served off loopback (its policy), not a stand-in."""
    pytest.importorskip("fastapi")
    from collector.config import HttpSettings
    from collector.events import EventBus
    from collector.http.app import create_app
    from collector.http.server import HttpServer
    from collector.http.store import open_read_store
    from collector.metrics import CollectorMetrics
    from collector.stores.base import open_store

    url = f"sqlite:///{tmp_path}/results.db"
    content = b"TFL3" + os.urandom(3000)
    writer = open_store(url)
    ref = ModelRef(sha256=writer.add_model("m.tflite", content), name="m.tflite")
    writer.close()
    reader = open_read_store(url)
    app = create_app(reader, events=EventBus(), metrics=CollectorMetrics(),
                     publisher=lambda _t, _p: None,
                     settings=HttpSettings(listen="0.0.0.0:8080", token="operator",
                                           models_token="boards"))
    with HttpServer(app, "127.0.0.1", 0, on_stop=reader.close) as served:
        without = ModelCache(tmp_path / "a", models_url=served.url)
        with pytest.raises(ModelFetchError, match=r"\[models\] token_file"):
            without.get(ref)
        cache = ModelCache(tmp_path / "b", models_url=served.url, token="boards")
        assert cache.get(ref).read_bytes() == content
