"""``edgemeter analyze``: MACs, FLOPs, params and weight bytes counted from a model's graph.

Every op type whose MACs are not counted is named on stderr, one line per op type, whatever the
output format, so a partial count never passes for a whole one; the exit status stays 0, since
the counts that are there are right (the JSON carries the same list in ``macs_coverage``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.analyze import CONVENTION, ModelAnalysis, analyze_model


def run(args: argparse.Namespace) -> int:
    analysis = analyze_model(Path(args.model))
    for line in coverage_warnings(analysis):
        print(line, file=sys.stderr)
    if args.json:
        print(json.dumps(analysis.to_json(per_layer=args.per_layer), indent=2))
        return 0
    print(format_summary(Path(args.model), analysis))
    if args.per_layer:
        print()
        print(format_layers(analysis))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "analyze",
        help="count MACs, FLOPs, params and weight bytes of a model (ONNX or TFLite)",
        description="Count MACs, FLOPs (2 per MAC), other ops, params and weight bytes from the "
        "graph of an ONNX or TFLite model, for one sample. Nothing is run. Convention: "
        + CONVENTION,
    )
    parser.add_argument("model", metavar="MODEL", help="path of a .onnx or .tflite file")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument("--per-layer", action="store_true", help="also list every counted layer")
    parser.set_defaults(func=run)


def coverage_warnings(analysis: ModelAnalysis) -> list[str]:
    """One line per op type that may multiply-accumulate but whose MACs were not counted."""
    return [
        f"edgemeter: warning: MACs not counted for op type {op_type} ({nodes} node"
        f"{'s' if nodes != 1 else ''}): no MAC formula for it, so MACs and FLOPs are a lower bound"
        for op_type, nodes in analysis.macs_coverage.uncounted.items()
    ]


def _coverage_text(analysis: ModelAnalysis) -> str:
    coverage = analysis.macs_coverage
    counted = ", ".join(f"{op} x{n}" for op, n in coverage.counted.items()) or "no MAC ops"
    if coverage.complete:
        return f"complete ({counted})"
    uncounted = ", ".join(f"{op} x{n}" for op, n in coverage.uncounted.items())
    return f"PARTIAL: not counted {uncounted}; counted {counted}"


def format_summary(path: Path, analysis: ModelAnalysis) -> str:
    lower_bound = "" if analysis.macs_coverage.complete else "  (lower bound)"
    rows = [
        ("model", f"{path.name} ({analysis.format})"),
        ("precision", analysis.precision),
        ("MACs", f"{analysis.macs / 1e6:,.3f} M  ({analysis.macs:,}) per sample{lower_bound}"),
        ("MAC coverage", _coverage_text(analysis)),
        ("FLOPs", f"{analysis.flops / 1e6:,.3f} M  (2 x MACs)"),
        ("other ops", f"{analysis.other_ops / 1e6:,.3f} M  ({analysis.other_ops:,})"),
        ("params", f"{analysis.params:,}"),
        ("batch", f"{analysis.batch} samples per call, fixed by the file: counts are the graph's / "
                  f"{analysis.batch}" if analysis.batch > 1 else "1 (or dynamic)"),
        ("weight bytes", f"{analysis.weight_bytes:,}  ({analysis.weight_bytes / 1024:,.1f} KiB)"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def format_layers(analysis: ModelAnalysis) -> str:
    header = ("#", "layer", "op", "output shape", "MACs", "other ops", "params")
    rows: list[Sequence[str]] = [header]
    for index, layer in enumerate(analysis.layers):
        rows.append(
            (
                str(index),
                _shorten(layer.name, 48),
                layer.op_type,
                "x".join(str(d) for d in layer.output_shape) or "?",
                f"{layer.macs:,}",
                f"{layer.other_ops:,}",
                f"{layer.params:,}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {0, 4, 5, 6}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]
