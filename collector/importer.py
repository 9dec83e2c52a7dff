"""Store result files as MQTT ingest stores messages: ``edgemeter results import FILE_OR_DIR``.

For machines that cannot reach a broker (a supercomputer's compute nodes, an air-gapped board),
``edgemeter bench --json PATH`` writes each result to a file; on a machine that reaches the
database, :func:`import_paths` stores them with the same rules as the collector's MQTT intake:

- each result goes through :func:`collector.ingest.ingest` (the same size, JSON, schema-version,
  validation and storability checks) on the topic its own fleet and device_id name, so a file
  that would be refused over MQTT is refused here, and kept as a dead letter with the reason;
- valid results are stored with :meth:`collector.stores.base.Store.add_results`, which skips a
  ``run_id`` already stored: importing a file twice, or one the device also published, stores it
  once.

A file holds one result (what ``bench --json`` writes) or a JSON list of results; a directory is
read recursively for ``*.json``, in name order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from collector.ingest import MAX_PAYLOAD_BYTES, Rejection, ingest
from collector.stores.base import Store
from shared.errors import ConfigError
from shared.schema import BenchmarkResult
from shared.topics import Topics, valid_level

logger = logging.getLogger(__name__)

PLACEHOLDER = "unknown"
"""Topic level used when a file does not name a usable fleet or device_id (it is refused anyway)."""


@dataclass
class ImportReport:
    """What one import did: results read, newly stored, already stored, and files refused."""

    read: int = 0
    stored: int = 0
    known: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) for each result kept as a dead letter"""

    def summary(self) -> str:
        return (f"imported {self.stored} new result(s) of {self.read} read ({self.known} already stored, "
                f"{len(self.rejected)} refused and kept as dead letters)")


def result_files(paths: Iterable[Path]) -> list[Path]:
    """The files to import: each file given, and every ``*.json`` under each directory."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path}: no such file or directory")
    return found


def _topic_for(payload: bytes) -> str:
    """The result topic the payload's own fleet and device_id name (placeholders if it names none)."""
    fleet = device_id = PLACEHOLDER
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        if isinstance(doc.get("fleet"), str) and valid_level(doc["fleet"]):
            fleet = doc["fleet"]
        if isinstance(doc.get("device_id"), str) and valid_level(doc["device_id"]):
            device_id = doc["device_id"]
    return Topics.result(fleet, device_id)


def _payloads(path: Path) -> Iterator[bytes]:
    """Each result's bytes in a file: the file itself, or each element of a top-level list."""
    data = path.read_bytes()
    if len(data) <= MAX_PAYLOAD_BYTES * 64 and data.lstrip()[:1] == b"[":
        try:
            items = json.loads(data)
        except (ValueError, RecursionError):
            items = None
        if isinstance(items, list):
            for item in items:
                yield json.dumps(item).encode()
            return
    yield data


def import_paths(store: Store, paths: Iterable[Path]) -> ImportReport:
    """Validate and store every result under ``paths``; refused ones become dead letters."""
    report = ImportReport()
    for path in result_files(paths):
        try:
            payloads = list(_payloads(path))
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror}") from err
        batch: list[BenchmarkResult] = []
        topics: list[str] = []
        raw: list[bytes] = []
        for payload in payloads:
            report.read += 1
            topic = _topic_for(payload)
            outcome = ingest(topic, payload)
            if isinstance(outcome, Rejection):
                address = Topics.parse(topic)
                device = address.device_id if address and address.device_id != PLACEHOLDER else None
                store.add_dead_letter(topic, f"{path.name}: {outcome.reason}", payload, device_id=device)
                report.rejected.append((str(path), outcome.reason))
                logger.info("refused %s: %s", path, outcome.reason)
                continue
            batch.append(outcome)
            topics.append(topic)
            raw.append(payload)
        if batch:
            added = store.add_results(batch, topics=topics, payloads=raw)
            report.stored += added
            report.known += len(batch) - added
    return report
