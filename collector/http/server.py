"""Run the app on uvicorn in a thread of the calling process (``collector serve --http``).

:class:`HttpServer` binds its socket in :meth:`~HttpServer.start` (so a port in use or a bad
address is a one-line :class:`~shared.errors.ConfigError` before anything else starts), serves
from a daemon thread, and :meth:`~HttpServer.stop` ends open event streams and waits for the
thread. Signals stay with the main thread: uvicorn installs no handlers off the main thread, so
Ctrl-C and SIGTERM reach ``serve``, which stops this server with everything else.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError

if TYPE_CHECKING:
    from collector.config import HttpSettings
    from collector.events import EventBus
    from collector.http.api import Publisher
    from collector.metrics import CollectorMetrics

__all__ = ["HttpServer", "start_http"]

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


class HttpServer:
    """One uvicorn server for ``app`` on ``host:port`` (port 0: a free one, see :attr:`port`)."""

    def __init__(self, app: Any, host: str, port: int,
                 on_stop: Callable[[], None] | None = None) -> None:
        """``on_stop`` runs once the server has stopped (e.g. closing its read store)."""
        self.app = app
        self.host = host
        self.port = port
        self._on_stop = on_stop
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve; returns once the server accepts connections."""
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it a keep-alive client waits ~40 ms (Nagle + delayed ACK) on every response
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as err:
            sock.close()
            raise ConfigError(f"cannot listen on {self.host}:{self.port} for HTTP: "
                              f"{err.strerror or err}; choose another --http HOST:PORT") from err
        sock.listen(128)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="collector-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the HTTP server on {self.url} did not start; see the log above")
            time.sleep(0.01)
        logger.info("HTTP API on %s", self.url)

    def stop(self) -> None:
        """End event streams, stop accepting, wait for the thread (a few seconds at most)."""
        if self._server is None:
            self._run_on_stop()
            return
        stopping = getattr(getattr(self.app, "state", None), "stopping", None)
        if stopping is not None:
            stopping.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None
        self._run_on_stop()

    def _run_on_stop(self) -> None:
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            on_stop()

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_http(http: HttpSettings, db_url: str, *, events: EventBus, metrics: CollectorMetrics,
               publisher: Publisher, port: int | None = None) -> HttpServer:
    """Open the store again for reading, build the app and serve it (``collector serve --http``).

    ``port`` overrides the port of ``http.listen`` (0: any free one, see :attr:`HttpServer.port`).
    Refuses (:class:`ConfigError`) to listen off loopback without a token: that would be a
    database open to the network.
    """
    from collector.http.app import create_app
    from collector.http.auth import is_loopback, split_listen
    from collector.http.store import open_read_store

    host, listen_port = split_listen(http.listen)
    port = listen_port if port is None else port
    if http.token is None and not is_loopback(host):
        raise ConfigError(f"--http {http.listen} is not a loopback address: set a token first "
                          "([http] token_file, EDGEMETER_COLLECTOR__HTTP__TOKEN or the systemd "
                          "credential http-token), or listen on 127.0.0.1")
    if http.models_token is None and not is_loopback(host):
        logger.warning("--http %s is not a loopback address and no models token is set: agents "
                       "cannot fetch models until [http] models_token_file is set (and [models] "
                       "token_file on the boards)", http.listen)
    reader = open_read_store(db_url)
    try:
        app = create_app(reader, events=events, metrics=metrics, publisher=publisher,
                         settings=http)
        server = HttpServer(app, host, port, on_stop=reader.close)
        server.start()
    except BaseException:
        reader.close()
        raise
    return server
