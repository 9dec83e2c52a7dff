"""Progress while a run happens: phases in order and queries done, never inside the timed loop."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from agent.config import load_settings
from agent.progress import LiveLatencies, TerminalProgress
from agent.runner import Runner


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_run_reports_its_phases_in_order_and_the_queries_it_measured(shared_models: Path) -> None:
    reports: list[dict[str, Any]] = []
    settings = load_settings({"iterations": 300, "warmup": 5, "power": "none", "fidelity": 2,
                              "threads": 1})
    result = Runner(settings, shared_models / "kws_dscnn_int8.tflite",
                    progress=reports.append).run()
    phases = [r["phase"] for r in reports]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        "load", "idle", "warmup", "measure", "fidelity"]
    last_measure = [r for r in reports if r.get("iterations_done") is not None][-1]
    assert last_measure["iterations_done"] == result.latency_ms.count == 300
    assert last_measure["running_p50_ms"] > 0


def test_the_reporter_reads_the_record_the_loop_appends_to() -> None:
    reports: list[dict[str, Any]] = []
    with LiveLatencies(reports.append, every_s=3600) as live:
        live.record.extend([1_000_000, 3_000_000, 2_000_000])
    assert reports[-1] == {"phase": "measure", "iterations_done": 3, "running_p50_ms": 2.0}


def test_terminal_progress_draws_one_line_on_a_terminal_and_nothing_elsewhere() -> None:
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        line = TerminalProgress("vww.tflite", stream=stream)
        line({"phase": "measure", "iterations_done": 10, "running_p50_ms": 1.5})
        line.close()
    assert pipe.getvalue() == ""
    assert "\rvww.tflite: measure, 10 queries, p50 1.500 ms" in tty.getvalue()
    assert "\n" not in tty.getvalue()


def test_a_log_line_clears_the_progress_line_before_it_is_written() -> None:
    import logging

    tty = Tty()
    handler = logging.StreamHandler(tty)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        line = TerminalProgress("kws.tflite", stream=tty)
        line({"phase": "measure", "iterations_done": 10, "running_p50_ms": 0.456})
        logging.getLogger("agent.runner").warning("throughput had not settled")
        line.close()
        logging.getLogger("agent.runner").warning("after close")
    finally:
        root.removeHandler(handler)
    out = tty.getvalue()
    assert "msWARNING" not in out
    assert "p50 0.456 ms\r" in out and "\rWARNING agent.runner: throughput had not settled\n" in out
    assert not handler.filters  # close() removed the filter


def test_the_load_phase_line_ends_so_native_output_starts_on_its_own_line() -> None:
    tty = Tty()
    line = TerminalProgress("kws.tflite", stream=tty)
    line({"phase": "load"})
    tty.write("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")  # what LiteRT prints
    line.close()
    assert "loadINFO" not in tty.getvalue()
    assert "kws.tflite: load\nINFO: Created" in tty.getvalue()


def test_the_measure_line_says_how_long_the_run_takes_at_most(shared_models: Path) -> None:
    tty = Tty()
    line = TerminalProgress("kws.tflite", stream=tty)
    line({"phase": "measure", "min_s": 10.0, "at_most_s": 30.0})
    line({"phase": "measure", "iterations_done": 50})
    line.close()
    assert "measure (at least 10 s, at most 30 s), 50 queries" in tty.getvalue()
    reports: list[dict[str, Any]] = []
    settings = load_settings({"profile": "quick", "warmup": 5, "power": "none", "fidelity": 0})
    Runner(settings, shared_models / "kws_dscnn_int8.tflite", progress=reports.append).run()
    assert {"phase": "measure", "min_s": 1.0} in reports
