"""The wire contract between the edgemeter agent and collector.

Everything that crosses the broker is a pydantic model from :mod:`shared.schema`, addressed by a
topic built in :mod:`shared.topics`. Both sides import this package and nothing else of each other.
"""

from shared.errors import EdgemeterError
from shared.schema import SCHEMA_VERSION, BenchmarkResult
from shared.topics import Topics

__all__ = ["SCHEMA_VERSION", "BenchmarkResult", "EdgemeterError", "Topics"]
