"""Alerts: the collector's ``[[alerts.rules]]`` evaluated per device, stored, streamed and sent on.

* :class:`AlertEvaluator` (:mod:`collector.alerts.evaluator`): one pass over the rules at a time
  given by an injected clock; keeps which conditions hold since when, fires an alert once a
  condition has held ``for_s`` seconds and resolves it when it stops holding.
* :class:`AlertmanagerSink` (:mod:`collector.alerts.alertmanager`): posts firing and resolved
  alerts to an Alertmanager's v2 API (``POST /api/v2/alerts``).
* :class:`AlertLoop` (:mod:`collector.alerts.loop`): runs the evaluator every
  ``evaluate_every_s`` in a thread of ``collector serve`` (:func:`start_alerts`).

Rules and their settings: :mod:`collector.monitoring_settings`.
"""

from __future__ import annotations

from collector.alerts.alertmanager import AlertmanagerSink
from collector.alerts.evaluator import AlertEvaluator, AlertSink, Transition
from collector.alerts.loop import AlertLoop, start_alerts

__all__ = ["AlertEvaluator", "AlertLoop", "AlertSink", "AlertmanagerSink", "Transition",
           "start_alerts"]
