"""Who may call the HTTP API: open reads on loopback, a bearer token everywhere else.

Rules (:class:`AccessPolicy`):

* a server bound to a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) serves reads
  (``GET``, ``HEAD``) to anyone who can reach it, i.e. processes on this machine;
* bound to any other address, every request needs ``Authorization: Bearer <token>`` (the
  ``[http]`` token);
* every ``POST`` needs the token, wherever the server is bound; with no token configured a POST is
  refused (403) with a line saying how to set one;
* exceptions: the dashboard's static files (``/``, ``/static/...``: code, no data) and
  ``/models/{sha256}`` are open, because agents fetch models without a token and a model is named
  by its 256-bit hash, which only a job (sent by a token holder) reveals;
* a browser's ``EventSource`` cannot send headers, so ``GET /api/events`` also takes the token as
  ``?token=...`` (the server's access log is off, so it is not written anywhere).

Tokens are compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

__all__ = ["AccessPolicy", "is_loopback", "split_listen"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PREFIXES = ("/static/", "/models/")
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

    def refusal(self, method: str, path: str, authorization: str | None,
                query_token: str | None) -> tuple[int, str] | None:
        """``None`` when the request may proceed, else ``(status, one-line reason)``."""
        safe = method.upper() in SAFE_METHODS
        if safe and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
            return None
        if safe and self.loopback:
            return None
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


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
