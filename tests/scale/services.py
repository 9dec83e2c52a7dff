"""Real services for scale tests and ``bench/scaleout.py``: a roomy Mosquitto and collector processes.

:class:`RoomyMosquitto` is a private Mosquitto (MQTT v5 and 3.1.1) on a free loopback port, set up
for many clients through the one launcher (:class:`edgemeter.demo.mosquitto.Mosquitto`):
``max_connections -1`` and its file-descriptor limit raised (``RLIMIT_NOFILE``, up to the hard
limit) before it starts, plus a queue of a million messages and the demo broker's in-flight window.
It logs subscriptions, so :meth:`RoomyMosquitto.subscribed` can tell when a collector is ready.

:class:`CollectorProcess` runs the real ``edgemeter collector serve`` in a subprocess, logging to a
file, and waits until it says it is listening; :meth:`CollectorProcess.stop` sends SIGTERM and
returns the counters of its last log line (``collector stopped: {...}``).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from edgemeter.demo.loopback import free_port, stop_process
from edgemeter.demo.mosquitto import Mosquitto, anonymous_config

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class RoomyMosquitto(Mosquitto):
    """A private Mosquitto that takes many clients; see the module docstring."""

    def __init__(self, workdir: Path, *, max_fds: int = 8192) -> None:
        self.port = free_port()
        super().__init__(
            workdir,
            anonymous_config(self.port, max_connections=-1, max_queued_messages=1_000_000,
                             log_types=("error", "warning", "notice", "subscribe")),
            ports=[self.port], max_fds=max_fds, name="roomy test broker",
        )

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def fd_limit(self) -> int:
        """The soft file-descriptor limit the running Mosquitto got."""
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        raise AssertionError("no 'Max open files' in /proc/PID/limits")

    def subscribed(self, client_id: str, topic_part: str = "/result") -> bool:
        """Whether the broker logged a subscription of ``client_id`` to a topic with ``topic_part``."""
        return any(f" {client_id} " in line and topic_part in line for line in self.log().splitlines())


STOPPED = re.compile(r"collector stopped: (\{.*\})")


class CollectorProcess:
    """``edgemeter collector serve`` in a subprocess; see the module docstring."""

    def __init__(self, mqtt_url: str, db_url: str, client_id: str, log: Path, *,
                 group: str | None = None, fleet: str | None = None, verbose: bool = True) -> None:
        """``verbose``: log at INFO (a line per stored result, and the final counters)."""
        self.client_id = client_id
        self.log = log
        argv = [sys.executable, "-m", "edgemeter.cli", *(["-v"] if verbose else []), "collector",
                "serve", "--mqtt", mqtt_url, "--db", db_url, "--client-id", client_id]
        if group:
            argv += ["--group", group]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
        env["PYTHONPATH"] = str(REPO)
        if fleet:
            env["EDGEMETER_COLLECTOR__MQTT__FLEET"] = fleet
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_listening(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "listening on" not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"collector {self.client_id} did not start:\n{self.text()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60.0) -> dict[str, int]:
        """SIGTERM, wait, and the counters it logged on the way out."""
        stop_process(self.process, timeout_s)
        found = STOPPED.findall(self.text())
        if not found:
            raise AssertionError(f"collector {self.client_id} logged no final counters:\n"
                                 f"{self.text()[-2000:]}")
        return dict(ast.literal_eval(found[-1]))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
