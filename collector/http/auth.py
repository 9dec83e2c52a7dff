"""Who may call the HTTP API: open reads on loopback, a bearer token everywhere else.

Rules (:class:`AccessPolicy`):

* a server bound to a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) serves reads
  (``GET``, ``HEAD``) to anyone who can reach it, i.e. processes on this machine;
* bound to any other address, every request needs ``Authorization: Bearer <token>`` (the
  ``[http]`` token);
* every ``POST`` needs the token, wherever the server is bound; with no token configured a POST is
  refused (403) with a line saying how to set one;
* exception: the dashboard's static files (``/``, ``/static/...``: code, no data) are open;
* ``/models/{sha256}`` is what agents fetch jobs' models from: open on loopback, and elsewhere it
  needs ``Authorization: Bearer <models token>`` (``[http] models_token``, which boards carry as
  ``[models] token_file``; the operator's token works too). Boards never hold the operator's token,
  which may send jobs;
* a browser's ``EventSource`` cannot send headers, so ``GET /api/events`` also takes the token as
  ``?token=...`` (the server's access log is off, so it is not written anywhere).

Tokens are compared in constant time (:func:`hmac.compare_digest`).

:class:`HostCheck` refuses requests whose ``Host`` header names a server other than this one (a
page on another site that rebinds its own DNS name to 127.0.0.1 could otherwise read the API):
allowed are the listen address, ``localhost``, the loopback addresses and ``[http] allowed_hosts``
(``*`` there allows any), and, on a server bound to every interface (``0.0.0.0``, ``::``), any IP
address (a rebinding page always uses a name).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

__all__ = ["AccessPolicy", "HostCheck", "is_loopback", "split_listen"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PREFIXES = ("/static/",)
MODELS_PREFIX = "/models/"
OPEN_PATHS = frozenset({"/", "/index.html", "/favicon.ico"})
QUERY_TOKEN_PATHS = frozenset({"/api/events"})


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as ``(host, port)``."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; ``0.0.0.0`` and ``::`` are not loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is treated as exposed


@dataclass(frozen=True)
class AccessPolicy:
    """Decides, per request, whether it may proceed; see the module docstring."""

    loopback: bool
    token: str | None
    models_token: str | None = None

    def refusal(self, method: str, path: str, authorization: str | None,
                query_token: str | None) -> tuple[int, str] | None:
        """``None`` when the request may proceed, else ``(status, one-line reason)``."""
        safe = method.upper() in SAFE_METHODS
        if safe and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
            return None
        if safe and self.loopback:
            return None
        if safe and path.startswith(MODELS_PREFIX):
            return self._models_refusal(_bearer(authorization))
        if self.token is None:
            return 403, ("no HTTP token is configured: set [http] token_file (or "
                         "EDGEMETER_COLLECTOR__HTTP__TOKEN) to allow this request")
        given = _bearer(authorization)
        if given is None and safe and path in QUERY_TOKEN_PATHS:
            given = query_token
        if given is None:
            return 401, "this request needs 'Authorization: Bearer <token>' (the [http] token)"
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401, "wrong bearer token"
        return None


    def _models_refusal(self, given: str | None) -> tuple[int, str] | None:
        if self.models_token is None and self.token is None:
            return 403, ("no models token is configured: set [http] models_token_file on the "
                         "collector and [models] token_file on the boards")
        if given is None:
            return 401, ("this request needs 'Authorization: Bearer <models token>' (the boards' "
                         "[models] token_file)")
        if any(hmac.compare_digest(given.encode(), t.encode())
               for t in (self.models_token, self.token) if t is not None):
            return None
        return 401, "wrong bearer token for /models/"


class HostCheck:
    """Whether a request's ``Host`` header names this server; see the module docstring."""

    def __init__(self, listen_host: str, allowed_hosts: list[str] | tuple[str, ...] = ()) -> None:
        names = {"localhost", "127.0.0.1", "::1", listen_host.lower(), *(h.lower() for h in
                                                                         allowed_hosts)}
        self.any_host = "*" in names
        self.any_address = _is_wildcard(listen_host)
        self.names = frozenset(names - {"*", "0.0.0.0", "::"})

    def allows(self, host_header: str | None) -> bool:
        if self.any_host:
            return True
        if not host_header:
            return False
        host = _host_of(host_header.strip().lower())
        if host in self.names or host.endswith(".localhost"):
            return True
        if self.any_address:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return False
            return True
        return False


def _host_of(header: str) -> str:
    """``example.org:8080`` -> ``example.org``; ``[::1]:8080`` -> ``::1``."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
