"""``edgemeter sustained MODEL``: burst vs sustained throughput, and when the board throttles.

Runs the model back to back until its throughput and the board's temperature settle (or
``--cap-s``), printing one line every 10 s, then the burst throughput (first ``--burst-s``), the
sustained one, the time to the first throttle and where the temperature went; ``--json`` prints
the whole report with its per-second thermal trace instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.errors import ConfigError
from shared.run_settings import RunSettings
from shared.settings_flags import add_settings_flags, only, settings_from_args

_NOT_RUNTIME = only(RunSettings, ("backend", "threads"))
"""The run settings this command takes are the runtime ones: their flags come from RunSettings."""

DESCRIPTION = (
    "Run the model back to back until its throughput and the board's temperature settle (or "
    "--cap-s), printing one line every 10 s, then the burst throughput (the first --burst-s), the "
    "sustained one, the time to the first throttle and where the temperature went. --json prints "
    "the whole report with its per-second thermal trace instead. Boards without temperature "
    "sensors say so."
)


def _run(args: argparse.Namespace) -> int:
    from agent.monitor_job import load_call
    from agent.sustained import SustainedSettings, TraceSample, run_sustained

    runtime = settings_from_args(args, RunSettings, skip=_NOT_RUNTIME)

    if not args.model.is_file():
        raise ConfigError(f"no model at {args.model}: give an .onnx or .tflite file")
    try:
        settings = SustainedSettings(burst_s=args.burst_s, settle_s=args.settle_s,
                                     cap_s=args.cap_s)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    call = load_call(args.model, runtime.backend, runtime.threads)

    def progress(sample: TraceSample) -> None:
        if not args.json and int(sample.t_s) % 10 == 0:
            temp = "n/a" if sample.temperature_c is None else f"{sample.temperature_c:.1f} C"
            print(f"{sample.t_s:6.0f} s  {sample.throughput_sps:9.1f} samples/s  {temp}"
                  + ("  throttled" if sample.throttled else ""), file=sys.stderr, flush=True)

    report = run_sustained(call, settings=settings, on_sample=progress)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sustained", help="burst vs sustained throughput: run a model until "
                            "the board settles", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, metavar="MODEL", help="an .onnx or .tflite file")
    parser.add_argument("--cap-s", type=float, default=900.0,
                        help="stop here even if not settled (default 900)")
    parser.add_argument("--settle-s", type=float, default=60.0,
                        help="throughput and temperature steady over this long (default 60)")
    parser.add_argument("--burst-s", type=float, default=10.0,
                        help="the burst is the first this many seconds (default 10)")
    add_settings_flags(parser, RunSettings, skip=_NOT_RUNTIME)
    parser.add_argument("--json", action="store_true", help="print the report with its trace")
    parser.set_defaults(func=_run)
