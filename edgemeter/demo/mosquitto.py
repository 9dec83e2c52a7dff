"""The one Mosquitto launcher: a ``mosquitto`` process on loopback ports, run from config lines.

The demo's private broker (:class:`edgemeter.demo.broker.PrivateBroker`) and every broker the tests
start (a plain one, a secured one rendered from ``deploy/mosquitto``, one with persistence that a
test kills, one for a thousand clients) go through :class:`Mosquitto`, so starting, waiting for the
ports, logging, stopping and killing work one way. :func:`anonymous_config` writes the usual
config: an anonymous listener on 127.0.0.1 with the queue and in-flight limits a fleet needs::

    port = free_port()
    with Mosquitto(workdir, anonymous_config(port), ports=[port]) as broker:
        connect(f"mqtt://127.0.0.1:{port}", ...)

    # persistence on disk, saved every second; kill -9 and start again on the same port and store
    conf = anonymous_config(port, persistence_dir=workdir / "data", autosave_interval_s=1)
    broker = Mosquitto(workdir, conf, ports=[port]).start()
    broker.kill()
    broker.start()

    # many clients: no connection cap, and the descriptor limit raised for the broker alone
    Mosquitto(workdir, anonymous_config(port, max_connections=-1), ports=[port], max_fds=8192)

:meth:`Mosquitto.start` writes ``mosquitto.conf`` into the working folder, appends mosquitto's
output to ``mosquitto.log`` there, runs it in its own session (a Ctrl-C in the terminal reaches
only its parent, which stops it when it is done with it) and returns once every listed port accepts
TCP connections; otherwise it raises :class:`~shared.errors.BrokerError`, one line ending with the
broker's last log lines. Started as root, mosquitto would switch to the ``mosquitto`` user, who
cannot read or write a private folder, so the launcher adds ``user <the caller>`` when the config
names no user, and it makes the ``persistence_location`` folder.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from edgemeter.demo.loopback import HOST, port_accepts, raise_fd_limit, stop_process, wait_for_ports
from shared.errors import BrokerError

DEFAULT_START_TIMEOUT_S = 10.0
KILL_WAIT_S = 10.0
LOG_TAIL_LINES = 3
# Debian and Ubuntu install mosquitto into sbin, which is not on every user's PATH.
MOSQUITTO_FALLBACKS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
# Mosquitto's default of 1000 silently drops QoS 1 messages queued for a slow subscriber; a fleet
# publishes bursts larger than that (deploy/mosquitto/edgemeter.conf says the same).
MAX_QUEUED_MESSAGES = 100_000
# The collector acknowledges only after it stores; Mosquitto's default window of 20 unacknowledged
# messages would stall it behind one slow database batch.
MAX_INFLIGHT_MESSAGES = 100
LOG_TYPES = ("error", "warning", "notice", "information")


def find_mosquitto() -> Path | None:
    """The ``mosquitto`` binary on PATH (or in the usual sbin folders), or ``None``."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    for candidate in MOSQUITTO_FALLBACKS:
        if Path(candidate).is_file() and shutil.which(candidate):
            return Path(candidate)
    return None


def anonymous_config(
    port: int,
    *,
    persistence_dir: Path | None = None,
    autosave_interval_s: int | None = None,
    max_queued_messages: int = MAX_QUEUED_MESSAGES,
    max_inflight_messages: int = MAX_INFLIGHT_MESSAGES,
    max_connections: int | None = None,
    log_types: Sequence[str] = LOG_TYPES,
    extra: Sequence[str] = (),
) -> list[str]:
    """Config lines for an anonymous broker on ``127.0.0.1:port``.

    ``persistence_dir``: keep sessions and queued messages in ``mosquitto.db`` there (saved every
    ``autosave_interval_s``, and on a clean stop); without it nothing is kept on disk.
    ``max_inflight_messages=0`` lifts the in-flight window; ``max_connections=-1`` lifts the
    connection cap. ``extra`` lines are appended as they are.
    """
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        f"max_queued_messages {max_queued_messages}",
        f"max_inflight_messages {max_inflight_messages}",
    ]
    if persistence_dir is None:
        lines.append("persistence false")
    else:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
        if autosave_interval_s is not None:
            lines.append(f"autosave_interval {autosave_interval_s}")
    if max_connections is not None:
        lines.append(f"max_connections {max_connections}")
    # stderr is unbuffered: the log file can be read while the broker runs
    lines.append("log_dest stderr")
    lines += [f"log_type {kind}" for kind in log_types]
    lines += list(extra)
    return lines


def _one_line(text: str, max_lines: int = LOG_TAIL_LINES) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-max_lines:]) or "no log output"


class Mosquitto:
    """A ``mosquitto`` process run from ``config`` lines in ``workdir``; see the module docstring.

    ``ports``: the listeners :meth:`start` waits for (all of the config's, normally).
    ``binary``: the mosquitto to run (default: :func:`find_mosquitto`). ``max_fds``: the broker's
    own descriptor limit, raised before it starts. ``name`` names the broker in error messages.
    """

    def __init__(
        self,
        workdir: Path,
        config: Sequence[str],
        *,
        ports: Sequence[int],
        binary: Path | None = None,
        max_fds: int | None = None,
        name: str = "mosquitto",
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        if not ports:
            raise ValueError("a Mosquitto needs at least one port to wait for")
        self.workdir = Path(workdir)
        self.config = list(config)
        self.ports = tuple(ports)
        self.binary = binary
        self.max_fds = max_fds
        self.name = name
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    # -- files and state -----------------------------------------------------------------------

    @property
    def conf_file(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"the {self.name} is not running")
        return self._process.pid

    def log(self) -> str:
        """Everything mosquitto has written so far (all starts), or ``""``."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the log, on one line."""
        return _one_line(self.log(), lines)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Mosquitto:
        """Write the config, run mosquitto and return once every port accepts connections."""
        if self.running:
            return self
        binary = self.binary or find_mosquitto()
        if binary is None:
            raise self._failure("mosquitto is not installed (apt-get install mosquitto)")
        taken = [port for port in self.ports if port_accepts(port)]
        if taken:
            # Checked first so that the readiness poll below can only ever reach our broker.
            raise self._failure(f"port {taken[0]} is already in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for line in self.config:  # mosquitto saves nothing into a folder that is not there
            words = line.split(maxsplit=1)
            if len(words) == 2 and words[0] == "persistence_location":
                Path(words[1]).mkdir(parents=True, exist_ok=True)
        self.conf_file.write_text("# Written by edgemeter's Mosquitto launcher.\n"
                                  + "\n".join(self._config_lines()) + "\n")
        max_fds = self.max_fds

        def before_exec() -> None:  # in the child
            if max_fds is not None:
                raise_fd_limit(max_fds)

        try:
            with self.log_file.open("ab") as log:
                self._process = subprocess.Popen(
                    [str(binary), "-c", str(self.conf_file)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=before_exec if max_fds is not None else None,
                )
        except OSError as err:
            raise self._failure(f"cannot run {binary}: {err}") from err
        waiting = wait_for_ports(self.ports, self._process, self.start_timeout_s)
        if waiting:
            code = self._process.poll()
            self.stop()
            detail = (f"mosquitto exited with status {code}" if code is not None
                      else f"port {waiting[0]} not open after {self.start_timeout_s:g} s")
            raise self._failure(detail, with_log=True)
        return self

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file, as a clean shutdown does); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def kill(self) -> None:
        """``kill -9``: nothing is saved on the way out."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(KILL_WAIT_S)

    def restart(self) -> None:
        """Stop and start on the same ports, config and persistence store."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its password and ACL files."""
        if self._process is None:
            raise BrokerError(f"the {self.name} is not running")
        self._process.send_signal(signal.SIGHUP)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Mosquitto({self.name!r}, ports={list(self.ports)}, running={self.running})"

    # -- helpers -------------------------------------------------------------------------------

    def _config_lines(self) -> list[str]:
        names_user = any(line.split()[:1] == ["user"] for line in self.config)
        if os.geteuid() == 0 and not names_user:
            return [f"user {getpass.getuser()}", *self.config]
        return self.config

    def _failure(self, detail: str, *, with_log: bool = False) -> BrokerError:
        where = ", ".join(f"{HOST}:{port}" for port in self.ports)
        suffix = f" (log: {self.log_tail()})" if with_log else ""
        return BrokerError(f"the {self.name} did not start on {where}: {detail}{suffix}")
