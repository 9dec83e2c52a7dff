"""``edgemeter analyze``: MACs, FLOPs, params and weight bytes counted from a model's graph."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from agent.analyze import CONVENTION, ModelAnalysis, analyze_model


def run(args: argparse.Namespace) -> int:
    analysis = analyze_model(Path(args.model))
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


def format_summary(path: Path, analysis: ModelAnalysis) -> str:
    rows = [
        ("model", f"{path.name} ({analysis.format})"),
        ("precision", analysis.precision),
        ("MACs", f"{analysis.macs / 1e6:,.3f} M  ({analysis.macs:,})"),
        ("FLOPs", f"{analysis.flops / 1e6:,.3f} M  (2 x MACs)"),
        ("other ops", f"{analysis.other_ops / 1e6:,.3f} M  ({analysis.other_ops:,})"),
        ("params", f"{analysis.params:,}"),
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
