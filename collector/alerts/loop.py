"""Running the alert evaluator in a thread of ``collector serve``.

:func:`start_alerts` opens the store again (its own connections, like the HTTP API), builds the
evaluator with the Alertmanager sink when ``[alerts] alertmanager_url`` is set, and runs a pass
every ``evaluate_every_s``; it returns ``None`` when no rule is configured. A failing pass (the
store is down) is logged and the next one tries again. :meth:`AlertLoop.stop` ends the thread
and closes the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from collector.alerts.alertmanager import AlertmanagerSink
from collector.alerts.evaluator import AlertEvaluator, Publish
from collector.monitoring_settings import AlertSettings

__all__ = ["AlertLoop", "start_alerts"]

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AlertLoop:
    """Calls ``evaluator.evaluate()`` every ``interval_s`` in a daemon thread."""

    def __init__(self, evaluator: AlertEvaluator, interval_s: float,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.evaluator = evaluator
        self.interval_s = interval_s
        self._on_stop = on_stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgemeter-alerts", daemon=True)
        self._failing = False

    def start(self) -> AlertLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluator.evaluate()
                if self._failing:
                    logger.warning("alert evaluation works again")
                self._failing = False
            except Exception as err:  # a store outage: say so once, try again next time
                if not self._failing:
                    logger.error("alert evaluation failed (%s); trying again every %.0f s",
                                 err, self.interval_s)
                self._failing = True
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._on_stop is not None:
            self._on_stop()


def start_alerts(settings: AlertSettings, db_url: str, *, publish: Publish | None = None,
                 clock: Callable[[], datetime] = _utc_now) -> AlertLoop | None:
    """The running alert loop of ``collector serve``, or ``None`` without rules."""
    if not settings.rules:
        return None
    from collector.stores.base import open_store

    store = open_store(db_url, migrate=False)
    sink = AlertmanagerSink(settings.alertmanager_url) if settings.alertmanager_url else None
    evaluator = AlertEvaluator(settings.rules, store, clock=clock, sink=sink, publish=publish)
    return AlertLoop(evaluator, settings.evaluate_every_s, on_stop=store.close).start()
