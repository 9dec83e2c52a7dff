"""The wire contract between the edgemeter agent and collector.

Everything that crosses the broker is a pydantic model from :mod:`shared.schema` (results) or
:mod:`shared.messages` (presence, telemetry, jobs, receipts), addressed by a topic built in
:mod:`shared.topics`. Both sides import this package and nothing else of each other.

The names below are loaded on first use, so importing a light module of this package (the errors,
the topics) does not load pydantic: the command line starts fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "BenchmarkResult", "EdgemeterError", "Topics"]


def __getattr__(name: str) -> Any:
    if name in ("SCHEMA_VERSION", "BenchmarkResult"):
        from shared import schema

        return getattr(schema, name)
    if name == "EdgemeterError":
        from shared.errors import EdgemeterError

        return EdgemeterError
    if name == "Topics":
        from shared.topics import Topics

        return Topics
    raise AttributeError(f"module 'shared' has no attribute {name!r}")
