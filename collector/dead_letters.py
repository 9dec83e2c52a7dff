"""Replaying dead letters through today's validation (:func:`collector.ingest.read`).

A message is dead-lettered by the validation of the collector that received it. After an upgrade
(a newer schema, a fixed bug) some of them may be valid now: :func:`replay` reads each again and
stores what validates the way the collector would have (a result with its topic and payload as
received, a status, telemetry or ack with the time the letter was last received), then deletes
those letters. What is still rejected stays, with the reason it fails now. A letter whose payload
was cut to 64 KiB cannot be whole again and stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.ingest import Rejection, read
from collector.records import DeadLetter
from collector.stores.base import Store
from shared.messages import JobAck, Progress, Status, Telemetry
from shared.schema import BenchmarkResult

__all__ = ["ReplayOutcome", "replay"]


@dataclass(frozen=True)
class ReplayOutcome:
    """What became of one dead letter: ``stored`` (it left the dead letters) and a line why."""

    letter_id: int
    stored: bool
    detail: str


def replay(store: Store, ids: Sequence[int] | None = None) -> list[ReplayOutcome]:
    """Replay these dead letters (None: all), oldest first; unknown ids are reported as such."""
    if ids is None:
        letters = store.list_dead_letters()
        outcomes: list[ReplayOutcome] = []
    else:
        found = {i: store.get_dead_letter(i) for i in dict.fromkeys(ids)}
        letters = [letter for letter in found.values() if letter is not None]
        outcomes = [ReplayOutcome(i, False, "no such dead letter")
                    for i, letter in found.items() if letter is None]
    for letter in letters:
        outcomes.append(_replay_one(store, letter))
    return outcomes


def _replay_one(store: Store, letter: DeadLetter) -> ReplayOutcome:
    assert letter.id is not None
    if letter.truncated:
        return ReplayOutcome(letter.id, False, f"kept only {len(letter.payload)} of its "
                             f"{letter.size_bytes} bytes: it cannot be read again")
    message = read(letter.topic, letter.payload)
    if isinstance(message, Rejection):
        return ReplayOutcome(letter.id, False, f"still rejected: {message.reason}")
    received_at = letter.last_seen or letter.received_at
    if isinstance(message, BenchmarkResult):
        new = store.add_results([message], topics=[letter.topic], payloads=[letter.payload])
        detail = f"stored result {message.run_id}" if new else \
            f"result {message.run_id} was already stored"
    elif isinstance(message, Status):
        store.record_status(message, received_at)
        detail = f"applied status {message.status} (bd_seq {message.bd_seq}) of {message.device_id}"
    elif isinstance(message, Telemetry):
        store.record_telemetry(message, received_at)
        detail = f"applied telemetry of {message.device_id}"
    elif isinstance(message, JobAck):
        store.record_ack(message, received_at)
        detail = f"applied ack {message.state} of job {message.job_id}"
    else:
        assert isinstance(message, Progress)
        detail = "valid progress (nothing to store: progress is only live)"
    store.delete_dead_letters([letter.id])
    return ReplayOutcome(letter.id, True, detail)
