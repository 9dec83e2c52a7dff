"""``edgemeter sweep MODEL``: the throughput-latency table over batch sizes and stream counts.

Each cell is one run (``--streams`` parallel sessions, each with ``--threads`` threads and batch
``--batch``); latency is per query (one batched call). ``--batch`` and ``--streams`` take lists,
one cell per pair; every other flag is the one ``bench`` takes. The defaults differ from
``bench``'s where a sweep needs it: the offline scenario, 3 s per cell, no fidelity inputs, no
power measurement (and so no idle baseline).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.commands.bench_args import add_bench_flags, settings_from_args
from agent.config import BenchSettings
from agent.progress import TerminalProgress, null_sink
from agent.runner import Runner
from shared.errors import ConfigError, EdgemeterError, MissingExtraError, require_module
from shared.paths import check_output_path

#: sweep's own defaults, where they differ from bench's (they win over env and file, as flags do)
SWEEP_DEFAULTS = {"scenario": "offline", "duration_s": 3.0, "fidelity": 0,
                  "power.source": "none", "power.idle_s": 0.0}
#: the settings sweep takes a list of, one cell per combination
SWEEP_AXES = ("batch", "streams")


def plot(
    rows: list[dict[str, Any]],
    path: Path,
    *,
    model: str,
    device: str,
    duration_s: float,
    skipped: Sequence[tuple[int, int, str]] = (),
) -> None:
    """Throughput against p50 latency, one line per stream count, one point per batch size.

    The title names the model, the device, the threads per stream and the seconds per cell; the
    throughput axis starts at 0 so heights compare honestly; cells that did not run are listed
    under the chart with the reason. The file type follows the suffix of ``path`` (PNG, SVG, ...).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MissingExtraError("plot", "matplotlib") from err
    fig = Figure(figsize=(8, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    lines = [f"batch {b}, {n} stream(s): {reason}" for b, n, reason in skipped]
    if lines:
        grid = fig.add_gridspec(2, 1, height_ratios=[5.0, 0.3 + 0.25 * len(lines)])
        ax, notes = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
        notes.axis("off")
        notes.text(0.0, 1.0, "skipped cells (did not run):\n" + "\n".join(lines), fontsize=8,
                   va="top", ha="left", color="0.3", transform=notes.transAxes)
    else:
        ax = fig.add_subplot()
    for streams in sorted({r["streams"] for r in rows}):
        sel = sorted((r for r in rows if r["streams"] == streams), key=lambda r: r["batch"])
        ax.plot([r["latency_ms"]["p50"] for r in sel], [r["throughput_sps"] for r in sel],
                marker="o", label="1 stream" if streams == 1 else f"{streams} parallel streams")
        for r in sel:
            mark = "" if r.get("valid", True) else " (invalid)"
            ax.annotate(f"batch {r['batch']}{mark}", (r["latency_ms"]["p50"], r["throughput_sps"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
    threads = sorted({r["threads"] for r in rows if r.get("threads") is not None})
    per_stream = "/".join(str(t) for t in threads) if threads else "the runtime's default"
    plural = "" if threads == [1] else "s"
    ax.set_title(f"{model} on {device}\n{per_stream} thread{plural} per stream, {duration_s:g} s "
                 "per cell (offline scenario)", fontsize=10)
    ax.set_xlabel("p50 latency per query (ms): lower is better")
    ax.set_ylabel("throughput (samples/s): higher is better")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0, top=max(r["throughput_sps"] for r in rows) * 1.15)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=100)


def _cell_settings(args: argparse.Namespace, batch: int, streams: int) -> BenchSettings:
    return settings_from_args(args, batch=batch, streams=streams)


def run(args: argparse.Namespace) -> int:
    # every input and output is checked before the first cell loads a model
    check_output_path(args.json, "--json")
    check_output_path(args.plot, "--plot")
    if args.plot:
        require_module("matplotlib", "plot")
    first = _cell_settings(args, args.batch[0], args.streams[0])
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[int, int, str]] = []
    device = ""
    for batch in args.batch:
        for streams in args.streams:
            settings = _cell_settings(args, batch, streams)
            progress = TerminalProgress(f"batch {batch}, streams {streams}") \
                if not args.quiet else None
            try:
                result = Runner(settings, args.model, quiet=args.quiet,
                                progress=progress or null_sink).run()
            except ConfigError:
                raise
            except EdgemeterError as err:
                if progress is not None:
                    progress.close()
                print(f"batch {batch}, streams {streams}: skipped ({err})")
                skipped.append((batch, streams, str(err)))
                continue
            if progress is not None:
                progress.close()
            device = f"{result.device_id} ({result.device.hardware_key or 'no hardware key'})"
            rows.append({
                "batch": batch,
                "streams": streams,
                "threads": result.spec.effective.threads,
                "throughput_sps": result.throughput_sps,
                "latency_ms": result.latency_ms.model_dump(mode="json"),
                "run_id": str(result.run_id),
                "valid": result.validity.valid,
            })
            print(f"batch {batch:>3}  streams {streams:>2}  {result.throughput_sps:10.1f} samples/s"
                  f"  p50 {result.latency_ms.p50:8.3f} ms  p99 {result.latency_ms.p99:8.3f} ms")
    if not rows:
        raise EdgemeterError("no sweep cell ran; check --batch (the model may have a fixed batch)")
    base = rows[0]["throughput_sps"]
    for row in rows:
        row["speedup"] = row["throughput_sps"] / base
    try:
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        if args.plot:
            plot(rows, Path(args.plot), model=args.model.name, device=device,
                 duration_s=first.duration_s or 0.0, skipped=skipped)
    except OSError as err:
        raise EdgemeterError(f"cannot write the sweep output: {err}") from err
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep", help="throughput-latency table over batch and streams",
        description="Run MODEL once per batch size and stream count and print the "
        "throughput-latency table (optionally as JSON or a plot). --batch and --streams take "
        "comma-separated lists; every other flag is the one bench takes. Defaults differ from "
        "bench's where a sweep needs it: the offline scenario, 3 s per cell, no fidelity inputs, "
        "no power measurement.")
    out = add_bench_flags(parser, lists=SWEEP_AXES, defaults=SWEEP_DEFAULTS,
                          skip=("publish", "spool"))["output"]
    out.add_argument("--json", metavar="PATH", help="write the rows as a JSON list")
    out.add_argument("--plot", metavar="PNG", help="write a throughput-latency plot")
    parser.set_defaults(func=run)
