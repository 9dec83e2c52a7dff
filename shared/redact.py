"""Keep secrets out of what edgemeter prints: one helper for every URL that reaches a log or message.

Broker and database URLs may carry a password (``mqtt://user:pass@host``,
``postgresql://user:pass@host/db``), which older deployments rely on. Anything that prints such a
URL, in a log line, an error message or a status line, passes it through :func:`redact_url` first.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_url"]

MASK = "***"

# scheme://user:password@ ; the password runs to the last "@" before whitespace, "?" or "#", so a
# password with an unescaped "@" or "/" is masked whole (at worst a little of the host goes with it)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:@/?#]*):[^\s?#]*@")


def redact_url(url: object) -> str:
    """``url`` as text, with the password of every ``scheme://user:password@`` in it as ``***``.

    The user name, host, port, path and query stay, so the result still says where edgemeter
    connects. It also works on a message that embeds URLs (a driver's error text, say), and returns
    anything without a password unchanged; it never raises, since it sits in error paths.
    """
    return _USERINFO.sub(rf"\1:{MASK}@", str(url))
