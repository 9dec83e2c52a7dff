"""Keep secrets out of what edgemeter prints: one helper for every URL that reaches a log or message.

Broker and database URLs may carry a password (``mqtt://user:pass@host``,
``postgresql://user:pass@host/db``), which older deployments rely on. Anything that prints such a
URL, in a log line, an error message or a status line, passes it through :func:`redact_url` first.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "argv_password_warning", "redact_url"]

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


def argv_password_warning(url: str | None, flag: str, file_flag: str) -> str | None:
    """A one-line warning when a URL given on the command line as ``flag`` carries a password
    (every user of the machine can read a process's arguments), else None; ``file_flag`` is the
    option that reads it from a file instead."""
    if url is None or redact_url(url) == url:
        return None
    return (f"warning: the password in {flag} is visible to other users of this machine (ps, "
            f"/proc); put it in a file instead: {file_flag} FILE (password_file)")
