"""Telemetry history, monitor windows and alerts in the results database.

:class:`HistoryMixin` gives :class:`collector.stores.sql.SqlStore` these methods (it owns the
tables ``telemetry``, ``telemetry_1m``, ``monitor_windows`` and ``alerts`` of
:mod:`collector.stores.tables`; the store's transaction, dialect and clock are the store's):

* every telemetry message is kept twice in ``record_telemetry``'s transaction
  (:meth:`HistoryMixin._note_telemetry`): raw, one row per ``(device_id, sent_at)`` (a repeat
  changes nothing), and added into its device's row of that minute in ``telemetry_1m``, as sums
  and counts, so a longer step averages exactly;
* :meth:`HistoryMixin.telemetry_points` answers a device page's chart: one point per ``step_s``
  bucket (aligned to multiples of ``step_s`` since the epoch) from ``since`` to ``until``, each
  series averaged over the bucket (``temperature_c_max`` and ``spool_depth`` the highest,
  ``throttled`` true when any message said so), ``null`` where nothing was measured. A step under
  a minute reads the raw rows; a longer one the minute rows (step rounded up to whole minutes);
* :meth:`HistoryMixin.add_windows` keeps each monitor window once (by ``window_id``);
  :meth:`HistoryMixin.list_windows` gives them back oldest first;
* :meth:`HistoryMixin.prune_history` applies the retention (:class:`HistoryRetention`: raw
  telemetry 48 h, minute rows 90 days, windows 90 days, resolved alerts 90 days by default). On
  PostgreSQL the telemetry tables are partitioned by month (:mod:`collector.stores.partitions`):
  whole months older than the cutoff are dropped, the rest deleted by row;
* alerts: :meth:`HistoryMixin.open_alert`, :meth:`HistoryMixin.resolve_alert`,
  :meth:`HistoryMixin.list_alerts` (used by :mod:`collector.alerts`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Connection,
    case,
    cast,
    delete,
    extract,
    func,
    literal,
    select,
    text,
    update,
)

from collector.monitoring_settings import HistoryRetention
from collector.stores.partitions import Month, Partitions, existing_months, month_bounds, partition_name
from collector.stores.tables import alerts, monitor_windows, telemetry, telemetry_1m
from shared.messages import Telemetry
from shared.monitoring import MonitorWindow

if TYPE_CHECKING:
    from collector.stores.dialects import Database

__all__ = [
    "MAX_POINTS",
    "AlertRecord",
    "HistoryMixin",
    "HistoryPruneOutcome",
    "HistoryRetention",
    "telemetry_row",
]

#: A chart asks for at most this many points (a longer range needs a longer step).
MAX_POINTS = 10_000
#: Windows :meth:`HistoryMixin.list_windows` returns at most.
MAX_WINDOWS = 50_000
REGRESSED_RECENT = timedelta(minutes=10)
REGRESSED_BASELINE = timedelta(hours=24)
REGRESSED_RATIO = 1.25
"""A device *regressed* when its windows' mean p99 of the last 10 minutes is over 1.25 times the
mean of the 24 hours before (the fleet page's sparkline badge and ``/api/devices?regressed=true``)."""
_HISTORY_TABLES = ("telemetry", "telemetry_1m")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The 1-minute sums and counts, by the series they average.
_AVERAGED = ("cpu_util_pct", "memory_used_bytes", "temperature_c", "power_w")


@dataclass(frozen=True)
class HistoryPruneOutcome:
    telemetry_deleted: int
    telemetry_1m_deleted: int
    windows_deleted: int
    alerts_deleted: int
    partitions_dropped: tuple[str, ...] = ()

    def __str__(self) -> str:
        dropped = (f" ({len(self.partitions_dropped)} month partitions dropped)"
                   if self.partitions_dropped else "")
        return (f"pruned {self.telemetry_deleted} raw telemetry rows, "
                f"{self.telemetry_1m_deleted} 1-minute rows, {self.windows_deleted} monitor "
                f"windows, {self.alerts_deleted} resolved alerts{dropped}")


@dataclass(frozen=True)
class AlertRecord:
    id: int
    rule: str
    device_id: str
    fleet: str
    severity: str
    metric: str
    op: str
    threshold: float
    value: float | None
    state: str
    started_at: datetime
    resolved_at: datetime | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "resolved_at", "updated_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


def telemetry_row(message: Telemetry, received_at: datetime) -> dict[str, Any]:
    """The ``telemetry`` row of one message."""
    temps = list(message.temps_c.values())
    return {
        "device_id": message.device_id, "sent_at": message.sent_at, "fleet": message.fleet,
        "received_at": received_at, "cpu_util_pct": message.cpu_util_pct,
        "memory_used_bytes": message.memory_used_bytes,
        "temperature_c": max(temps) if temps else None, "throttled": message.throttled,
        "power_w": message.power_w, "power_source": message.power_source,
        "power_estimated": message.power_estimated, "spool_depth": message.spool_depth,
    }


def _minute_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "device_id": row["device_id"], "fleet": row["fleet"],
        "minute": row["sent_at"].astimezone(timezone.utc).replace(second=0, microsecond=0),
        "messages": 1, "throttled_n": 1 if row["throttled"] else 0,
        "spool_depth_max": row["spool_depth"], "temperature_c_max": row["temperature_c"],
    }
    for name in _AVERAGED:
        value = row[name]
        out[f"{name}_sum"] = float(value) if value is not None else 0.0
        out[f"{name}_n"] = 0 if value is None else 1
    return out


def _month_of(value: datetime) -> Month:
    value = value.astimezone(timezone.utc)
    return value.year, value.month


def _bucket_start(at: datetime, step_s: int) -> datetime:
    seconds = math.floor((at - _EPOCH).total_seconds() / step_s) * step_s
    return _EPOCH + timedelta(seconds=seconds)


class HistoryMixin:
    """The history methods of :class:`collector.stores.sql.SqlStore` (see the module docstring)."""

    _db: Database
    _clock: Callable[[], datetime]
    _transaction: Callable[..., contextlib.AbstractContextManager[Connection]]

    # -- partitions ------------------------------------------------------------------------------

    def _history_partitions(self) -> dict[str, Partitions]:
        parts: dict[str, Partitions] | None = getattr(self, "_history_parts", None)
        if parts is None:
            parts = {name: Partitions(self._db.partitioned, self._clock, name)
                     for name in _HISTORY_TABLES}
            self._history_parts = parts
        return parts

    def _history_ahead(self) -> None:
        """Make the telemetry tables' partitions for this month and the next (after migrate)."""
        for parts in self._history_partitions().values():
            parts.forget()
            self._make_history_partitions(parts, parts.ahead())

    def _make_history_partitions(self, parts: Partitions, months: Sequence[Month]) -> None:
        if not parts.missing(months):
            return
        from collector.errors import StoreError

        try:
            with self._transaction(f"making {parts.table} partitions", write=True) as conn:
                parts.make(conn, months)
        except StoreError as err:
            parts.failed(err)

    def _before_telemetry(self, sent_at: datetime) -> None:
        """Outside the transaction: the month partitions a telemetry row needs (PostgreSQL)."""
        month = [_month_of(sent_at)]
        for parts in self._history_partitions().values():
            self._make_history_partitions(parts, month)

    # -- telemetry -------------------------------------------------------------------------------

    def _note_telemetry(self, conn: Connection, message: Telemetry, received_at: datetime) -> None:
        """In ``record_telemetry``'s transaction: the raw row and the minute's sums (a message
        already kept, same device and ``sent_at``, is not added again)."""
        row = telemetry_row(message, received_at)
        new = conn.execute(self._db.insert_skipping_known(telemetry, ["device_id", "sent_at"])
                           .returning(telemetry.c.device_id), row).first()
        if new is None:
            return
        insert = self._db.insert(telemetry_1m)
        sets: dict[str, Any] = {
            "messages": telemetry_1m.c.messages + insert.excluded.messages,
            "throttled_n": telemetry_1m.c.throttled_n + insert.excluded.throttled_n,
            "spool_depth_max": case(
                (insert.excluded.spool_depth_max > telemetry_1m.c.spool_depth_max,
                 insert.excluded.spool_depth_max), else_=telemetry_1m.c.spool_depth_max),
            "temperature_c_max": case(
                (telemetry_1m.c.temperature_c_max.is_(None), insert.excluded.temperature_c_max),
                (insert.excluded.temperature_c_max > telemetry_1m.c.temperature_c_max,
                 insert.excluded.temperature_c_max), else_=telemetry_1m.c.temperature_c_max),
        }
        for name in _AVERAGED:
            for part in ("sum", "n"):
                column = f"{name}_{part}"
                sets[column] = telemetry_1m.c[column] + insert.excluded[column]
        conn.execute(insert.on_conflict_do_update(index_elements=["device_id", "minute"],
                                                  set_=sets), _minute_row(row))

    def telemetry_points(self, device_id: str, *, since: datetime, until: datetime,
                         step_s: int) -> list[dict[str, Any]]:
        """One point per ``step_s`` bucket from ``since`` to ``until`` (see the module
        docstring); raises ValueError for a step under 1 s or more than :data:`MAX_POINTS`."""
        if step_s < 1:
            raise ValueError("step must be at least 1 second")
        if step_s >= 60:
            step_s = math.ceil(step_s / 60) * 60
        first = _bucket_start(since, step_s)
        count = math.floor((until - first).total_seconds() / step_s) + 1
        if until < since:
            raise ValueError("until is before since")
        if count > MAX_POINTS:
            raise ValueError(f"{count} points asked for (at most {MAX_POINTS}): use a longer step")
        buckets: dict[datetime, dict[str, float]] = {}
        if step_s < 60:
            self._raw_buckets(device_id, first, until, step_s, buckets)
        else:
            self._minute_buckets(device_id, first, until, step_s, buckets)
        points = []
        for n in range(count):
            at = first + timedelta(seconds=n * step_s)
            acc = buckets.get(at)
            point: dict[str, Any] = {"t": at.isoformat()}
            for name in _AVERAGED:
                total_n = acc.get(f"{name}_n", 0) if acc else 0
                point[name] = acc[f"{name}_sum"] / total_n if acc and total_n else None
            point["temperature_c_max"] = acc.get("temperature_c_max") if acc else None
            point["throttled"] = (acc["throttled_n"] > 0) if acc and acc["messages"] else None
            point["spool_depth"] = int(acc["spool_depth_max"]) if acc and acc["messages"] else None
            point["messages"] = int(acc["messages"]) if acc else 0
            points.append(point)
        return points

    def _raw_buckets(self, device_id: str, first: datetime, until: datetime, step_s: int,
                     buckets: dict[datetime, dict[str, float]]) -> None:
        t = telemetry.c
        query = select(t.sent_at, t.cpu_util_pct, t.memory_used_bytes, t.temperature_c,
                       t.power_w, t.throttled, t.spool_depth).where(
            t.device_id == device_id, t.sent_at >= first,
            t.sent_at < until + timedelta(seconds=step_s)).order_by(t.sent_at)
        with self._transaction("reading telemetry", write=False) as conn:
            rows = conn.execute(query).all()
        for row in rows:
            acc = buckets.setdefault(_bucket_start(row.sent_at, step_s), _empty())
            acc["messages"] += 1
            acc["throttled_n"] += 1 if row.throttled else 0
            acc["spool_depth_max"] = max(acc["spool_depth_max"], row.spool_depth)
            for name in _AVERAGED:
                value = getattr(row, name)
                if value is not None:
                    acc[f"{name}_sum"] += float(value)
                    acc[f"{name}_n"] += 1
            if row.temperature_c is not None:
                acc["temperature_c_max"] = max(acc.get("temperature_c_max", -math.inf),
                                               row.temperature_c)

    def _minute_buckets(self, device_id: str, first: datetime, until: datetime, step_s: int,
                        buckets: dict[datetime, dict[str, float]]) -> None:
        """The minute rows summed per bucket by the database, so a long range comes back as one
        row per point (on PostgreSQL read from ``telemetry_1m_device_figures`` alone)."""
        m = telemetry_1m.c
        # whole seconds since the epoch, floored to the step (SQLite: strftime('%s')); the step
        # is a literal, so the GROUP BY repeats the selected expression exactly (PostgreSQL)
        seconds = cast(extract("epoch", m.minute), BigInteger)
        bucket = (seconds // literal(int(step_s), BigInteger, literal_execute=True)).label("bucket")
        query = select(bucket, func.sum(m.messages), func.sum(m.throttled_n),
                       func.max(m.spool_depth_max), func.max(m.temperature_c_max),
                       *(func.sum(m[f"{name}_{part}"]) for name in _AVERAGED
                         for part in ("sum", "n"))
                       ).where(m.device_id == device_id, m.minute >= first,
                               m.minute < until + timedelta(seconds=step_s)).group_by(bucket)
        with self._transaction("reading telemetry", write=False) as conn:
            rows = conn.execute(query).all()
        for index, messages, throttled_n, spool_depth_max, temperature_c_max, *sums in rows:
            acc = _empty()
            acc["messages"] = float(messages)
            acc["throttled_n"] = float(throttled_n)
            acc["spool_depth_max"] = float(spool_depth_max)
            for n, name in enumerate(_AVERAGED):
                acc[f"{name}_sum"] = float(sums[2 * n])
                acc[f"{name}_n"] = float(sums[2 * n + 1])
            if temperature_c_max is not None:
                acc["temperature_c_max"] = float(temperature_c_max)
            buckets[_EPOCH + timedelta(seconds=int(index) * step_s)] = acc

    # -- monitor windows -------------------------------------------------------------------------

    def add_windows(self, windows: Sequence[MonitorWindow], *,
                    payloads: Sequence[bytes] | None = None) -> int:
        """Keep each window once (by ``window_id``), in one transaction; returns how many were
        new. ``payloads``: each window's JSON as received (kept as its document)."""
        if not windows:
            return 0
        now = self._clock()
        rows = []
        for n, window in enumerate(windows):
            latency = window.latency_ms
            document = (payloads[n].decode() if payloads is not None
                        else window.model_dump_json())
            rows.append({
                "window_id": str(window.window_id), "device_id": window.device_id,
                "fleet": window.fleet, "name": window.name, "job_id": window.job_id,
                "start_at": window.start, "end_at": window.end, "queries": window.queries,
                "p50_ms": latency.p50 if latency else None,
                "p90_ms": latency.p90 if latency else None,
                "p99_ms": latency.p99 if latency else None,
                "throughput_sps": window.throughput_sps, "power_w": window.power_w,
                "temperature_c": window.temperature_c, "throttled": window.throttled,
                "received_at": now, "window": document,
            })
        statement = self._db.insert_skipping_known(monitor_windows, ["window_id"]) \
            .returning(monitor_windows.c.id)
        new = 0
        with self._transaction(f"storing {len(rows)} monitor windows", write=True) as conn:
            for row in rows:  # one by one: RETURNING says whether each was new
                new += conn.execute(statement, row).first() is not None
        return new

    def list_windows(self, device_id: str, *, since: datetime, until: datetime,
                     name: str | None = None, limit: int = MAX_WINDOWS) -> list[MonitorWindow]:
        """Windows of a device that end after ``since`` and start before ``until``, oldest
        first (the newest ``limit`` when there are more)."""
        w = monitor_windows.c
        where = [w.device_id == device_id, w.end_at > since, w.start_at < until]
        if name is not None:
            where.append(w.name == name)
        query = select(w.window).where(*where).order_by(w.start_at.desc(), w.id.desc()) \
            .limit(limit)
        with self._transaction("reading monitor windows", write=False) as conn:
            documents = conn.execute(query).scalars().all()
        return [MonitorWindow.model_validate_json(doc) for doc in reversed(documents)]

    def windows_after(self, after_id: int | None, *, limit: int = 10_000
                      ) -> tuple[int, list[MonitorWindow]]:
        """Windows stored after row ``after_id`` in storage order (at most ``limit``), and the
        row to read on from. ``None``: start now (no windows, and the newest row): a reader that
        counts windows from its own start on, as ``/metrics``' histograms do."""
        w = monitor_windows.c
        with self._transaction("reading monitor windows", write=False) as conn:
            if after_id is None:
                return int(conn.execute(select(func.max(w.id))).scalar() or 0), []
            rows = conn.execute(select(w.id, w.window).where(w.id > after_id)
                                .order_by(w.id).limit(limit)).all()
        if not rows:
            return after_id, []
        return int(rows[-1][0]), [MonitorWindow.model_validate_json(doc) for _, doc in rows]

    def newest_windows(self) -> dict[tuple[str, str], tuple[datetime, str]]:
        """(device_id, name) -> (its newest window's end, fleet): for missing-window alerts."""
        w = monitor_windows.c
        query = select(w.device_id, w.name, func.max(w.end_at), func.max(w.fleet)) \
            .group_by(w.device_id, w.name)
        with self._transaction("reading monitor windows", write=False) as conn:
            return {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(query)}

    def latest_window_figures(self) -> list[dict[str, Any]]:
        """The newest window of each (device, monitor): its figures (Prometheus gauges)."""
        w = monitor_windows.c
        newest = select(w.device_id, w.name, func.max(w.end_at).label("end_at")) \
            .group_by(w.device_id, w.name).subquery("newest")
        query = select(w.device_id, w.fleet, w.name, w.end_at, w.p50_ms, w.p99_ms,
                       w.throughput_sps).join(newest, (newest.c.device_id == w.device_id)
                                              & (newest.c.name == w.name)
                                              & (newest.c.end_at == w.end_at)) \
            .order_by(w.device_id, w.name)
        with self._transaction("reading monitor windows", write=False) as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def window_trends(self, device_ids: Sequence[str], *, now: datetime, points: int = 30,
                      span: timedelta = timedelta(hours=1)) -> dict[str, dict[str, Any]]:
        """Per device: the highest window p99 in each of ``points`` buckets over ``span`` (a
        sparkline, ``None`` where no window ended), the mean p99 of the recent windows and of
        the baseline before them, and ``regressed`` (:meth:`regressed_devices`' rule)."""
        if not device_ids:
            return {}
        w = monitor_windows.c
        ids = list(dict.fromkeys(device_ids))
        start = now - span
        step_s = span.total_seconds() / points
        out: dict[str, dict[str, Any]] = {
            device: {"p99_ms": [None] * points, "recent_p99_ms": None, "baseline_p99_ms": None,
                     "regressed": False} for device in ids}
        with self._transaction("reading monitor trends", write=False) as conn:
            rows = conn.execute(select(w.device_id, w.end_at, w.p99_ms).where(
                w.device_id.in_(ids), w.end_at > start, w.end_at <= now, w.p99_ms.is_not(None)))
            for device, end_at, p99 in rows:
                slot = min(points - 1, int((end_at - start).total_seconds() // step_s))
                line = out[device]["p99_ms"]
                line[slot] = p99 if line[slot] is None else max(line[slot], p99)
            recent, baseline = self._p99_means(conn, now, ids)
        for device, entry in out.items():
            entry["recent_p99_ms"] = recent.get(device)
            entry["baseline_p99_ms"] = baseline.get(device)
            entry["regressed"] = device in _regressed(recent, baseline)
        return out

    def regressed_devices(self, *, now: datetime) -> set[str]:
        """Devices whose monitor windows regressed: the mean p99 of the windows that ended in the
        last :data:`REGRESSED_RECENT` is over :data:`REGRESSED_RATIO` times the mean of the
        :data:`REGRESSED_BASELINE` before (the fleet page's filter, over every device)."""
        with self._transaction("reading monitor trends", write=False) as conn:
            return _regressed(*self._p99_means(conn, now, None))

    @staticmethod
    def _p99_means(conn: Connection, now: datetime, ids: Sequence[str] | None
                   ) -> tuple[dict[str, float], dict[str, float]]:
        """Per device, the mean window p99 of the recent span and of the baseline before it."""
        w = monitor_windows.c
        spans = []
        for since, until in ((now - REGRESSED_RECENT, now),
                             (now - REGRESSED_RECENT - REGRESSED_BASELINE,
                              now - REGRESSED_RECENT)):
            where = [w.end_at > since, w.end_at <= until, w.p99_ms.is_not(None)]
            if ids is not None:
                where.append(w.device_id.in_(list(ids)))
            query = select(w.device_id, func.avg(w.p99_ms)).where(*where).group_by(w.device_id)
            spans.append({device: float(mean) for device, mean in conn.execute(query)
                          if mean is not None})
        return spans[0], spans[1]

    def window_figures(self, since: datetime) -> list[dict[str, Any]]:
        """Each window's headline figures ending after ``since``, oldest first (alerts)."""
        w = monitor_windows.c
        query = select(w.device_id, w.fleet, w.name, w.end_at, w.p50_ms, w.p99_ms,
                       w.throughput_sps, w.temperature_c, w.throttled) \
            .where(w.end_at > since).order_by(w.end_at)
        with self._transaction("reading monitor windows", write=False) as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def window_throughputs(self, device_ids: Sequence[str], *, since: datetime,
                           until: datetime) -> dict[tuple[str, str], list[float]]:
        """(device_id, monitor name) -> the throughput of each of those devices' windows that
        ended in (``since``, ``until``]: what an alert's 24 h median is taken over."""
        if not device_ids:
            return {}
        w = monitor_windows.c
        query = select(w.device_id, w.name, w.throughput_sps).where(
            w.device_id.in_(list(dict.fromkeys(device_ids))), w.end_at > since,
            w.end_at <= until, w.throughput_sps.is_not(None))
        out: dict[tuple[str, str], list[float]] = {}
        with self._transaction("reading monitor throughput", write=False) as conn:
            for device_id, name, throughput in conn.execute(query):
                out.setdefault((device_id, name), []).append(float(throughput))
        return out

    # -- alerts ----------------------------------------------------------------------------------

    def open_alert(self, *, rule: str, device_id: str, fleet: str, severity: str, metric: str,
                   op: str, threshold: float, value: float | None, at: datetime) -> int:
        """Record a firing alert; returns its id."""
        with self._transaction("recording an alert", write=True) as conn:
            result = conn.execute(alerts.insert().values(
                rule=rule, device_id=device_id, fleet=fleet, severity=severity, metric=metric,
                op=op, threshold=threshold, value=value, state="firing", started_at=at,
                resolved_at=None, updated_at=at).returning(alerts.c.id))
            return int(result.scalar_one())

    def resolve_alert(self, alert_id: int, *, at: datetime, value: float | None = None) -> None:
        with self._transaction("resolving an alert", write=True) as conn:
            conn.execute(update(alerts).where(alerts.c.id == alert_id, alerts.c.state == "firing")
                         .values(state="resolved", resolved_at=at, updated_at=at, value=value))

    def list_alerts(self, *, state: str | None = None, device_id: str | None = None,
                    limit: int = 500) -> list[AlertRecord]:
        """Alerts, newest first."""
        a = alerts.c
        query = select(alerts).order_by(a.started_at.desc(), a.id.desc()).limit(limit)
        if state is not None:
            query = query.where(a.state == state)
        if device_id is not None:
            query = query.where(a.device_id == device_id)
        with self._transaction("reading alerts", write=False) as conn:
            return [AlertRecord(**row._mapping) for row in conn.execute(query)]

    # -- retention -------------------------------------------------------------------------------

    def prune_history(self, retention: HistoryRetention | None = None) -> HistoryPruneOutcome:
        """Apply ``retention`` (defaults: :class:`HistoryRetention`) to the history tables."""
        keep = retention or HistoryRetention()
        now = self._clock()
        raw_cutoff = now - timedelta(hours=keep.telemetry_raw_h)
        minute_cutoff = now - timedelta(days=keep.telemetry_1m_days)
        dropped: list[str] = []
        with self._transaction("pruning telemetry history", write=True) as conn:
            raw = self._prune_table(conn, "telemetry", "sent_at", raw_cutoff, dropped)
            minute = self._prune_table(conn, "telemetry_1m", "minute", minute_cutoff, dropped)
            windows = conn.execute(delete(monitor_windows).where(
                monitor_windows.c.end_at < now - timedelta(days=keep.monitor_windows_days)
            )).rowcount
            old_alerts = conn.execute(delete(alerts).where(
                alerts.c.state == "resolved",
                alerts.c.resolved_at < now - timedelta(days=keep.alerts_days))).rowcount
        for parts in self._history_partitions().values():
            parts.forget()
        return HistoryPruneOutcome(raw, minute, max(windows, 0), max(old_alerts, 0),
                                   tuple(dropped))

    def _prune_table(self, conn: Connection, table_name: str, key: str, cutoff: datetime,
                     dropped: list[str]) -> int:
        table = telemetry if table_name == "telemetry" else telemetry_1m
        total = 0
        if self._db.partitioned:
            for month in sorted(existing_months(conn, table_name)):
                if month_bounds(month)[1] > cutoff:
                    continue
                name = partition_name(month, table_name)
                total += int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar() or 0)
                conn.execute(text(f"DROP TABLE {name}"))
                dropped.append(name)
        total += max(conn.execute(delete(table).where(table.c[key] < cutoff)).rowcount, 0)
        return total


def _regressed(recent: dict[str, float], baseline: dict[str, float]) -> set[str]:
    return {device for device, mean in recent.items()
            if device in baseline and mean > REGRESSED_RATIO * baseline[device]}


def _empty() -> dict[str, float]:
    acc = {"messages": 0.0, "throttled_n": 0.0, "spool_depth_max": 0.0}
    for name in _AVERAGED:
        acc[f"{name}_sum"] = 0.0
        acc[f"{name}_n"] = 0.0
    return acc


def iter_window_spans(windows: Sequence[MonitorWindow], step_s: int) -> Iterator[
        list[MonitorWindow]]:
    """``windows`` (oldest first) grouped by the ``step_s`` bucket their start falls in."""
    group: list[MonitorWindow] = []
    current: datetime | None = None
    for window in windows:
        bucket = _bucket_start(window.start, step_s)
        if current is not None and bucket != current and group:
            yield group
            group = []
        current = bucket
        group.append(window)
    if group:
        yield group
