"""Sending alerts to a Prometheus Alertmanager through its v2 API (``POST /api/v2/alerts``).

Each alert carries the labels ``alertname`` (the rule's name), ``device_id``, ``fleet`` and
``severity``, annotations saying what held (``summary``, ``value``), ``startsAt`` and, once
resolved, ``endsAt``. Firing alerts are posted again on every evaluation, as Prometheus does, so
an Alertmanager restarted meanwhile learns them again. Only the standard library is used (a POST
with a timeout); a failure is logged once until a post works again and never raised to the
evaluator.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from collector.alerts.evaluator import Transition
from shared.redact import redact_url

__all__ = ["AlertmanagerSink", "alertmanager_payload"]

logger = logging.getLogger(__name__)

GENERATOR = "edgemeter-collector"


def _time(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def alertmanager_payload(alerts: Sequence[Transition], *, generator_url: str = "") -> list[dict[str, Any]]:
    """The v2 API's ``postableAlerts`` body for ``alerts``."""
    body = []
    for alert in alerts:
        rule = alert.rule
        value = "n/a" if alert.value is None else f"{alert.value:g}"
        item: dict[str, Any] = {
            "labels": {"alertname": rule.name, "device_id": alert.device_id,
                       "fleet": alert.fleet, "severity": rule.severity},
            "annotations": {
                "summary": f"{rule.metric} {rule.op} {rule.threshold:g} on {alert.device_id}",
                "value": value, "source": GENERATOR},
            "startsAt": _time(alert.started_at),
        }
        if alert.resolved_at is not None:
            item["endsAt"] = _time(alert.resolved_at)
        if generator_url:
            item["generatorURL"] = generator_url
        body.append(item)
    return body


Post = Callable[[str, bytes], None]


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


class AlertmanagerSink:
    """Posts alerts to ``{url}/api/v2/alerts``; ``post`` replaces the HTTP call (tests)."""

    def __init__(self, url: str, *, post: Post = _post, generator_url: str = "") -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self._post = post
        self._generator_url = generator_url
        self._failing = False

    def send(self, alerts: Sequence[Transition]) -> None:
        if not alerts:
            return
        body = json.dumps(alertmanager_payload(alerts, generator_url=self._generator_url)).encode()
        try:
            self._post(self.url, body)
        except (OSError, urllib.error.URLError, ValueError) as err:
            if not self._failing:
                logger.warning("cannot send alerts to Alertmanager at %s (%s); retrying on every "
                               "evaluation", redact_url(self.url), err)
            self._failing = True
            return
        if self._failing:
            logger.warning("alerts reach Alertmanager at %s again", redact_url(self.url))
        self._failing = False
