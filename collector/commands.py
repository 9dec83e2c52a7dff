"""Collector commands: ``collector serve``, ``collector migrate``, ``results`` and ``export``.

Extras: every database needs the ``collector`` extra (SQLAlchemy and Alembic; psycopg for a
``postgresql://`` URL), and ``export --format parquet`` needs pyarrow, which comes with it too.
Each command checks for what it needs before doing anything else, so the error is one line with
the command that adds the extra to this copy (:mod:`shared.install_hint`).

Reading commands (``results``, ``export``) never create a database: a missing SQLite file is an
error that says which path was looked at.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.commands_fleet import register_prune
from collector.stores.base import ResultFilter, Store, open_store
from shared.errors import ConfigError, EdgemeterError, require_module
from shared.redact import argv_password_warning, redact_url
from shared.schema import BenchmarkResult

if TYPE_CHECKING:
    from collector.config import CollectorSettings
    from collector.http import HttpServer
    from collector.service import CollectorService

__all__ = ["register"]

DB_HELP = "results database: sqlite:///PATH.db (relative), sqlite:////ABS/PATH.db or postgresql://"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: Any) -> None:
    """Add ``collector serve``, ``results`` and ``export`` to the root parser."""
    collector = subparsers.add_parser(
        "collector", help="run the collector service",
        description="Run the service that stores the fleet's results.",
    )
    collector_sub = collector.add_subparsers(dest="collector_command", metavar="COMMAND")
    collector.set_defaults(func=lambda _args: _help(collector))
    serve = collector_sub.add_parser(
        "serve", help="subscribe to every result topic and store what arrives",
        description="Subscribe (QoS 1, persistent session) to edgemeter/v1/+/+/result and store "
        "each result; malformed messages are kept as dead letters. Stops on Ctrl-C or SIGTERM "
        "after storing everything already received.",
    )
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help="TOML settings file (default: $EDGEMETER_COLLECTOR_CONFIG); flags win "
                       "over EDGEMETER_COLLECTOR__* variables, which win over the file; see "
                       "`edgemeter collector sample-config`")
    serve.add_argument("--mqtt", metavar="URL",
                       help="broker: mqtt://host[:port] or mqtts://... (default: "
                       "mqtt://localhost:1883); the password comes from the environment, a file "
                       "or a systemd credential, never a flag")
    serve.add_argument("--mqtt-username", metavar="NAME", help="broker user name")
    serve.add_argument("--mqtt-password-file", type=Path, metavar="FILE",
                       help="file holding the broker password")
    serve.add_argument("--mqtt-ca-file", type=Path, metavar="FILE",
                       help="CA certificate of the broker (mqtts://)")
    serve.add_argument("--mqtt-cert-file", type=Path, metavar="FILE",
                       help="client certificate for mutual TLS")
    serve.add_argument("--mqtt-key-file", type=Path, metavar="FILE",
                       help="client private key for mutual TLS")
    serve.add_argument("--db", metavar="URL", help=DB_HELP + " (required here, in the environment "
                       "or in the file)")
    serve.add_argument("--db-password-file", type=Path, metavar="FILE",
                       help="file holding the database password")
    serve.add_argument("--group", metavar="NAME",
                       help="MQTT v5 shared subscription group: collectors in one group split "
                       "the stream (ignored, with a warning, on a 3.1.1 broker)")
    serve.add_argument("--client-id", metavar="ID",
                       help="MQTT client id; keep it stable so the broker keeps results for you "
                       "while the collector is down, and unique among running collectors "
                       "(default: edgemeter-collector-HOSTNAME)")
    serve.add_argument("--fleet", metavar="FLEET",
                       help="collect one fleet only (default: every fleet)")
    serve.add_argument("--http", metavar="HOST:PORT",
                       help="also serve the HTTP API, live events, /metrics and the dashboard "
                       "here, e.g. 127.0.0.1:8080 (or set [http] listen); off loopback a token "
                       "is required")
    serve.add_argument("--http-token-file", type=Path, metavar="FILE",
                       help="file holding the HTTP bearer token (needed for POST, and for every "
                       "request when not bound to loopback)")
    serve.set_defaults(func=_serve)
    sample = collector_sub.add_parser(
        "sample-config", help="print an annotated collector config file (TOML)",
        description="Print every collector setting with its default, as a TOML file that "
        "`collector serve --config` reads back.",
    )
    sample.set_defaults(func=_sample_config)
    migrate = collector_sub.add_parser(
        "migrate", help="create or upgrade the results database's schema",
        description="Bring the database's schema to the newest revision this edgemeter knows "
        "(collector serve does the same when it starts), creating the tables in a new database "
        "and adopting one made before Alembic. A database from a newer edgemeter is refused.",
    )
    migrate.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    migrate.set_defaults(func=_migrate)
    register_prune(collector_sub)  # collector prune: collector/commands_fleet.py

    results = subparsers.add_parser(
        "results", help="list stored results (or dead letters)",
        description="List stored results, oldest first: a table by default, JSON with --json. "
        "--limit keeps the newest N.",
    )
    results.add_argument("--db", metavar="URL", help=DB_HELP + " (required)")
    results.add_argument("--json", action="store_true",
                         help="print a JSON list (each result as on the wire)")
    results.add_argument("--dead-letters", action="store_true",
                         help="list rejected messages instead: id, received_at, topic, reason, "
                         "size (with --json: the payload as base64)")
    results.add_argument("--model", metavar="M", help="model file name, network or sha256")
    results.add_argument("--device", metavar="D", help="device id")
    results.add_argument("--role", choices=["edge", "datacenter", "hpc"], help="device role")
    results.add_argument("--fleet", metavar="F", help="fleet name")
    results.add_argument("--limit", type=_positive_int, metavar="N", help="newest N only")
    results.set_defaults(func=_results)
    results_sub = results.add_subparsers(dest="results_command", metavar="{import}")
    imported = results_sub.add_parser(
        "import", help="store result files (bench --json) as MQTT ingest would",
        description="Store result files written by `edgemeter bench --json` (one result, or a JSON list "
        "of them; a directory is read recursively for *.json) with the same validation as MQTT "
        "ingest: a file that would be refused is kept as a dead letter with its reason, and a "
        "run_id already stored is skipped, so importing twice stores once. For compute nodes and "
        "boards that cannot reach a broker.",
    )
    imported.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR", help="result files or folders")
    imported.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    imported.set_defaults(func=_import_results)

    export = subparsers.add_parser(
        "export", help="export stored results as CSV, Parquet or JSON Lines",
        description="Export stored results. csv and parquet: one flat row per result (nested "
        "fields joined with '_', e.g. latency_ms_p50; lists as JSON). jsonl: each result as on "
        "the wire. csv and jsonl go to stdout without --output; parquet needs --output.",
    )
    export.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    export.add_argument("--format", required=True, choices=["csv", "parquet", "jsonl"],
                        help="output format (parquet needs the collector extra)")
    export.add_argument("--output", "-o", type=Path, metavar="PATH",
                        help="file to write (default: stdout, not for parquet)")
    export.add_argument("--model", metavar="M", help="model file name, network or sha256")
    export.add_argument("--device", metavar="D", help="device id")
    export.set_defaults(func=_export)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of ``collector serve`` as nested settings (``None``: not given)."""
    return {
        "mqtt": {
            "url": args.mqtt, "username": args.mqtt_username,
            "password_file": args.mqtt_password_file, "client_id": args.client_id,
            "group": args.group, "fleet": args.fleet,
            "tls": {"ca_file": args.mqtt_ca_file, "cert_file": args.mqtt_cert_file,
                    "key_file": args.mqtt_key_file},
        },
        "db": {"url": args.db, "password_file": args.db_password_file},
        "http": {"listen": getattr(args, "http", None),
                 "token_file": getattr(args, "http_token_file", None)},
    }


def _sample_config(_args: argparse.Namespace) -> int:
    from collector.config import sample_config

    print(sample_config(), end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from collector.config import load_settings
    from collector.metrics import CollectorMetrics
    from collector.service import CollectorService

    warning = argv_password_warning(args.mqtt, "--mqtt", "--mqtt-password-file")
    if warning is not None:
        print(f"edgemeter collector: {warning}", file=sys.stderr, flush=True)
    settings = load_settings(_serve_flags(args), args.config)
    try:
        store = open_store(settings.db.connect_url())
    except EdgemeterError as err:  # the URL may carry the password: never show it
        shown = redact_url(str(err))
        if shown == str(err):
            raise
        raise ConfigError(shown) from err
    def _print_stats(stats: dict[str, int], prefix: str = "edgemeter collector") -> None:
        # the counters are status output, not a warning: printed whatever the log level
        print(f"{prefix}: " + ", ".join(f"{k} {v}" for k, v in stats.items()), file=sys.stderr,
              flush=True)

    try:
        metrics = CollectorMetrics(max_devices=settings.ingest.metrics_max_devices)
        service = CollectorService(store, settings.mqtt, settings.ingest, metrics=metrics)
        print(f"edgemeter collector {service.client_id}: {service.broker} -> "
              f"{redact_url(store.url)} (Ctrl-C to stop)", file=sys.stderr)
        http = _start_http(settings, service, getattr(args, "http", None))
        from collector.alerts import start_alerts  # [alerts] rules: collector.alerts

        alerts = start_alerts(settings.alerts, settings.db.connect_url(),
                              publish=service.events.publish)
        try:
            service.serve_forever(report=_print_stats)
        finally:
            if alerts is not None:
                alerts.stop()
            if http is not None:
                http.stop()
        _print_stats(service.stats, "edgemeter collector stopped")
    finally:
        store.close()
    return 0


def _start_http(settings: CollectorSettings, service: CollectorService,
                flag: str | None) -> HttpServer | None:
    """The HTTP server in a thread of this process, sharing the service's bus, metrics and MQTT
    connection; ``None`` when neither ``--http`` nor ``[http] listen`` asks for it."""
    if flag is None and "listen" not in settings.http.model_fields_set:
        return None
    require_module("fastapi", "collector")
    require_module("uvicorn", "collector")
    from collector.http import start_http

    server = start_http(settings.http, settings.db.connect_url(), events=service.events,
                        metrics=service.metrics, publisher=service.publish)
    print(f"edgemeter collector: dashboard and API on {server.url}/", file=sys.stderr, flush=True)
    return server


def _filter(args: argparse.Namespace) -> ResultFilter:
    return ResultFilter(
        model=args.model,
        device_id=args.device,
        role=getattr(args, "role", None),
        fleet=getattr(args, "fleet", None),
        limit=getattr(args, "limit", None),
    )


def _import_results(args: argparse.Namespace) -> int:
    from collector.importer import import_paths

    store = open_store(args.db)
    try:
        report = import_paths(store, args.paths)
    finally:
        store.close()
    for path, reason in report.rejected:
        print(f"refused {path}: {reason}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    return 1 if report.rejected else 0


def _results(args: argparse.Namespace) -> int:
    if args.db is None:
        raise ConfigError("results needs --db URL (sqlite:///PATH.db or postgresql://...)")
    store = open_store(args.db, must_exist=True)
    try:
        if args.dead_letters:
            _print_dead_letters(store, args)
            return 0
        results = store.list_results(_filter(args))
    finally:
        store.close()
    if args.json:
        json.dump([r.model_dump(mode="json") for r in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(results)
    return 0


def _print_dead_letters(store: Store, args: argparse.Namespace) -> None:
    letters = store.list_dead_letters(limit=args.limit)
    if args.json:
        json.dump(
            [
                {
                    "id": d.id,
                    "received_at": d.received_at.isoformat(),
                    "topic": d.topic,
                    "reason": d.reason,
                    "size_bytes": len(d.payload),
                    "payload_base64": base64.b64encode(d.payload).decode("ascii"),
                }
                for d in letters
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return
    rows = [
        [str(d.id), d.received_at.strftime("%Y-%m-%d %H:%M:%S"), d.topic, d.reason,
         str(len(d.payload))]
        for d in letters
    ]
    _print_rows(["id", "received_at", "topic", "reason", "bytes"], rows, right={4})
    if not rows:
        print("(no dead letters)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table_rows(results: list[BenchmarkResult]) -> tuple[list[str], list[list[str]], set[int]]:
    """Header, cells and right-aligned column indexes of the ``results`` table."""
    energy = any(r.energy and r.energy.joules_per_inference is not None for r in results)
    header = ["run_id", "created_at (UTC)", "device", "role", "model", "runtime", "scenario",
              "p50 ms", "p90 ms", "p99 ms", "sps"]
    if energy:
        header.append("J/inf")
    header.append("valid")
    rows = []
    for r in results:
        row = [
            str(r.run_id)[:8],
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.device_id,
            r.role.value,
            r.model.name,
            f"{r.runtime.name} {r.runtime.version}",
            r.spec.effective.scenario.value,
            _ms(r.latency_ms.p50),
            _ms(r.latency_ms.p90),
            _ms(r.latency_ms.p99),
            f"{r.throughput_sps:.1f}",
        ]
        if energy:
            jpi = r.energy.joules_per_inference if r.energy else None
            # an estimate is never shown as if measured
            est = " est" if r.energy and r.energy.estimated else ""
            row.append("-" if jpi is None else f"{jpi:.4g}{est}")
        row.append("yes" if r.validity.valid else "NO")
        rows.append(row)
    right = {header.index(h) for h in ("p50 ms", "p90 ms", "p99 ms", "sps")}
    if energy:
        right.add(header.index("J/inf"))
    return header, rows, right


def print_table(results: list[BenchmarkResult]) -> None:
    header, rows, right = table_rows(results)
    _print_rows(header, rows, right)
    if not rows:
        print("(no results)")


def _print_rows(header: list[str], rows: list[list[str]], right: set[int]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    print(line(header))
    for row in rows:
        print(line(row))


def _export(args: argparse.Namespace) -> int:
    if args.format == "parquet":
        require_module("pyarrow", "collector")
        if args.output is None:
            raise ConfigError("parquet is binary: give --output PATH")
    from collector.export import StoredResults, export_results

    store = open_store(args.db, must_exist=True)
    try:
        count = export_results(StoredResults(store, _filter(args)), args.format, args.output,
                               sys.stdout)
    finally:
        store.close()
    if args.output is not None:
        print(f"wrote {count} results to {args.output}", file=sys.stderr)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    store = open_store(args.db, migrate=False)
    try:
        change = store.migrate()
    finally:
        store.close()
    if change.changed:
        print(f"{store.url}: migrated from {change.before or 'no revision'} to revision "
              f"{change.after}")
    else:
        print(f"{store.url}: already at revision {change.after}, the newest this edgemeter knows")
    return 0
