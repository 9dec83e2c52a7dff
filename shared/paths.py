"""Checks on paths a command will write, made before the command does any work."""

from __future__ import annotations

import os
from pathlib import Path

from shared.errors import ConfigError


def check_output_path(path: str | Path | None, flag: str) -> None:
    """Fail before any work when an output file could not be written (missing folder, a folder
    given as the file, no rights), naming the flag."""
    if not path:
        return
    target = Path(path)
    folder = target.resolve().parent
    if target.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{flag} {path}: the folder {folder} is not writable")
