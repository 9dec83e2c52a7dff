"""Real services for scale tests and ``bench/scaleout.py``: a roomy Mosquitto and collector processes.

:class:`RoomyMosquitto` is a private Mosquitto (MQTT v5 and 3.1.1) on a free loopback port, set up
for many clients: ``max_connections -1`` and its file-descriptor limit raised (``RLIMIT_NOFILE``,
up to the hard limit) before it starts, plus the big queue and in-flight window of the demo broker.
:func:`raise_fd_limit` raises this process's own soft limit, for a simulator with many clients
(each paho client holds a socket and a wake-up socket pair: three descriptors).

:class:`CollectorProcess` runs the real ``edgemeter collector serve`` in a subprocess, logging to a
file, and waits until it says it is listening; :meth:`CollectorProcess.stop` sends SIGTERM and
returns the counters of its last log line (``collector stopped: {...}``).
"""

from __future__ import annotations

import ast
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from edgemeter.demo.broker import find_mosquitto, free_port, port_accepts, stop_process
from shared.errors import BrokerError

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
FDS_PER_CLIENT = 3
"""A paho client: its socket and the socket pair that wakes its network loop."""


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class RoomyMosquitto:
    """A private Mosquitto that takes many clients; see the module docstring."""

    def __init__(self, workdir: Path, *, max_fds: int = 8192) -> None:
        self.workdir = workdir
        self.max_fds = max_fds
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self, timeout_s: float = 10.0) -> RoomyMosquitto:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_connections -1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "log_dest stderr\n"  # unbuffered: the log can be read while it runs

            "log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n"
        )
        max_fds = self.max_fds

        def limits() -> None:  # in the child, before exec
            raise_fd_limit(max_fds)

        with self.log.open("wb") as log:
            self.process = subprocess.Popen([str(binary), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=limits)
        deadline = time.monotonic() + timeout_s
        while not port_accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"mosquitto did not start on {self.url}: {self.log_tail()}")
            time.sleep(0.02)
        return self

    def fd_limit(self) -> int:
        """The soft file-descriptor limit the running Mosquitto got."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        raise AssertionError("no 'Max open files' in /proc/PID/limits")

    def subscribed(self, client_id: str, topic_part: str = "/result") -> bool:
        """Whether the broker logged a subscription of ``client_id`` to a topic with ``topic_part``."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return False
        return any(f" {client_id} " in line and topic_part in line for line in text.splitlines())

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "no log"

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None


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
