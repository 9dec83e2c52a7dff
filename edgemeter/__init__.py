"""The application layer: the one ``edgemeter`` command line and the demo.

It stands on both peers (``agent`` and ``collector``), which stand on the wire contract
(``shared``); nothing below imports it. See README "Architecture".
"""

from agent import __version__

__all__ = ["__version__"]
