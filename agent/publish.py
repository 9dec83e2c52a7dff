"""Deliver results to the broker at QoS 1, keeping them in a local outbox when it cannot.

The outbox is a folder of JSON files, one per result; every publish sends what is waiting there
first (oldest first), then the new result, and deletes a file only after its PUBACK. ``seq`` comes
from a counter file beside the outbox, so it only grows across runs and reboots.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path

from agent.errors import PublishError
from shared.errors import BrokerError
from shared.mqtt import connect
from shared.redact import redact_url
from shared.schema import BenchmarkResult
from shared.topics import Topics

logger = logging.getLogger(__name__)


class Outbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _ensure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def next_seq(self) -> int:
        """Increment and return the device's sequence counter (persisted beside the outbox)."""
        self._ensure()
        path = self.folder.parent / "seq"
        # a lock file, so a timer run and a manual run never draw the same number
        with (self.folder.parent / "seq.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                current = 0
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(current + 1))
            os.replace(tmp, path)
        return current + 1

    def put(self, result: BenchmarkResult) -> Path:
        self._ensure()
        stamp = result.created_at.strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}_{result.run_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(result.model_dump_json())
        os.replace(tmp, path)
        return path

    def pending(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.json"))


def publish(result: BenchmarkResult, broker_url: str, outbox: Outbox,
            timeout_s: float = 10.0) -> int:
    """Send waiting results and this one; returns how many were delivered.

    On failure the result is in the outbox and :class:`PublishError` says where. ``broker_url``
    may carry a password; no message shows it (:func:`shared.redact.redact_url`).
    """
    saved = outbox.put(result)
    try:
        conn = connect(broker_url, f"edgemeter-agent-{result.device_id}-{uuid.uuid4().hex[:6]}",
                       timeout_s=timeout_s)
    except BrokerError as err:
        raise PublishError(f"{redact_url(err)}; the result is kept in {saved.parent} and is sent by the "
                           "next --publish") from err
    delivered = 0
    with conn:
        for path in outbox.pending():
            try:
                waiting = BenchmarkResult.model_validate_json(path.read_bytes())
            except ValueError:
                logger.warning("outbox file %s is not a valid result; moved aside", path)
                path.rename(path.with_suffix(".bad"))
                continue
            topic = Topics.result(waiting.fleet, waiting.device_id)
            try:
                conn.publish(topic, path.read_bytes(), qos=1, timeout_s=timeout_s)
            except BrokerError as err:
                raise PublishError(f"{redact_url(err)}; {len(outbox.pending())} result(s) kept in "
                                   f"{outbox.folder}") from err
            path.unlink()
            delivered += 1
    return delivered
