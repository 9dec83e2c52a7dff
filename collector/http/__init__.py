"""The collector's HTTP side: JSON API, live events, Prometheus metrics and the dashboard.

Needs the ``collector`` extra (FastAPI, uvicorn). ``collector serve --http HOST:PORT`` runs it in a
thread of the serve process, sharing its event bus, metrics and MQTT connection.

* :func:`create_app` (:mod:`collector.http.app`): the ASGI app;
* :class:`HttpServer` (:mod:`collector.http.server`): uvicorn in a thread;
* :func:`open_read_store` (:mod:`collector.http.store`): the store opened again for reading;
* :class:`AccessPolicy` (:mod:`collector.http.auth`): open reads on loopback, a token elsewhere.
"""

from __future__ import annotations

from collector.http.app import create_app
from collector.http.auth import AccessPolicy, is_loopback, split_listen
from collector.http.server import HttpServer, start_http
from collector.http.store import ReadStore, open_read_store

__all__ = ["AccessPolicy", "HttpServer", "ReadStore", "create_app", "is_loopback",
           "open_read_store", "split_listen", "start_http"]
