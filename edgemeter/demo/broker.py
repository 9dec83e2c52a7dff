"""A private MQTT broker on a free loopback port, for ``edgemeter demo`` and for tests.

:class:`PrivateBroker` runs a ``mosquitto`` binary when one is installed (MQTT 5 and 3.1.1), and
otherwise the embedded amqtt broker (MQTT 3.1.1 only) in a thread with its own event loop. Either
way it listens on 127.0.0.1 only, allows anonymous clients and keeps nothing on disk::

    with PrivateBroker() as broker:
        publish_results(broker.url)  # mqtt://127.0.0.1:PORT

:meth:`PrivateBroker.start` returns once the port accepts TCP connections, or raises
:class:`~shared.errors.BrokerError` with a one-line message that ends with the broker's last log
lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from shared.errors import BrokerError, MissingExtraError

logger = logging.getLogger(__name__)

BrokerKind = Literal["mosquitto", "amqtt"]
Preference = Literal["auto", "mosquitto", "amqtt"]

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.02
LOG_TAIL_LINES = 3
# Debian and Ubuntu install mosquitto into sbin, which is not on every user's PATH.
MOSQUITTO_FALLBACKS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> Path | None:
    """The ``mosquitto`` binary on PATH (or in the usual sbin folders), or ``None``."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    for candidate in MOSQUITTO_FALLBACKS:
        if Path(candidate).is_file() and shutil.which(candidate):
            return Path(candidate)
    return None


def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on ``port`` of the loopback host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def stop_process(process: subprocess.Popen[Any], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s`` (a broker, a collector: any child we started)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("pid %d ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def _one_line(text: str, max_lines: int = LOG_TAIL_LINES) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-max_lines:]) or "no log output"


class PrivateBroker:
    """An anonymous MQTT broker on ``127.0.0.1:port`` that lives as long as this object is started.

    ``prefer`` picks the implementation: ``"auto"`` uses mosquitto when it is installed and amqtt
    otherwise; naming one makes it mandatory. ``port`` defaults to a free port chosen at start.
    """

    def __init__(
        self,
        prefer: Preference = "auto",
        *,
        port: int | None = None,
        mosquitto: str | Path | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        if prefer not in ("auto", "mosquitto", "amqtt"):
            raise ValueError(f"prefer must be 'auto', 'mosquitto' or 'amqtt', not {prefer!r}")
        self.prefer: Preference = prefer
        self.start_timeout_s = start_timeout_s
        self._requested_port = port
        self._mosquitto = Path(mosquitto) if mosquitto is not None else None
        self._port: int | None = None
        self._kind: BrokerKind | None = None
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def kind(self) -> BrokerKind:
        """``"mosquitto"`` or ``"amqtt"``: what :meth:`start` chose (or would choose)."""
        return self._kind or self._choose_kind()[0]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` of the running broker."""
        return f"mqtt://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> PrivateBroker:
        """Start the broker; return once its port accepts TCP connections."""
        if self.running:
            return self
        kind, binary = self._choose_kind()
        self._kind = kind
        self._port = self._requested_port or free_port()
        if port_accepts(self._port):
            # Checked first so that the readiness poll below can only ever reach our broker.
            raise self._failure("the port is already in use")
        self._workdir = Path(tempfile.mkdtemp(prefix=f"edgemeter-{kind}-"))
        began = time.monotonic()
        try:
            if binary is not None:
                self._start_mosquitto(binary)
            else:
                self._start_amqtt()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "private %s broker listening on %s (%.2f s to start)",
            kind, self.url, time.monotonic() - began,
        )
        return self

    def stop(self) -> None:
        """Stop the broker and remove its temporary files; safe to call more than once."""
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        if self._thread is not None:
            self._stop_amqtt(self._thread)
            self._thread = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"PrivateBroker(prefer={self.prefer!r}, {where})"

    # -- choosing ------------------------------------------------------------------------------

    def _choose_kind(self) -> tuple[BrokerKind, Path | None]:
        if self.prefer == "amqtt":
            return "amqtt", None
        binary = self._mosquitto or find_mosquitto()
        if binary is not None and shutil.which(str(binary)):
            return "mosquitto", binary
        if self.prefer == "mosquitto":
            where = f"at {self._mosquitto}" if self._mosquitto else "on PATH"
            raise BrokerError(
                f"cannot start a private mosquitto broker: no mosquitto executable {where} "
                "(apt-get install mosquitto, or let edgemeter use its embedded broker)"
            )
        logger.debug("mosquitto is not installed; using the embedded amqtt broker")
        return "amqtt", None

    def _failure(self, detail: str, log_tail: str | None = None) -> BrokerError:
        """A one-line :class:`BrokerError`; ``log_tail`` is the broker's own log, if it has one."""
        suffix = f" (log: {_one_line(log_tail)})" if log_tail is not None else ""
        return BrokerError(
            f"the private {self._kind} broker did not start on {HOST}:{self._port}: {detail}{suffix}"
        )

    # -- mosquitto -----------------------------------------------------------------------------

    def _mosquitto_log_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "mosquitto.log"

    def _mosquitto_log(self) -> str:
        if self._workdir is None:
            return ""
        try:
            return self._mosquitto_log_path().read_text(errors="replace")
        except OSError:
            return ""

    def _start_mosquitto(self, binary: Path) -> None:
        assert self._workdir is not None and self._port is not None
        conf = self._workdir / "mosquitto.conf"
        conf.write_text(
            "# Written by edgemeter: a private, anonymous broker on loopback only.\n"
            f"listener {self._port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "# Mosquitto's default of 1000 silently drops QoS 1 messages queued for a slow\n"
            "# subscriber; a demo fleet publishes bursts larger than that.\n"
            "max_queued_messages 100000\n"
            "# The collector acknowledges only after it stores; Mosquitto's default window of 20\n"
            "# unacknowledged messages would stall it behind one slow database batch.\n"
            "max_inflight_messages 100\n"
            "# stdout goes to mosquitto.log, opened by edgemeter: started as root, mosquitto drops\n"
            "# to its own user before it opens a 'log_dest file' and could not write here.\n"
            "log_dest stdout\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n"
            "log_type information\n"
        )
        try:
            with self._mosquitto_log_path().open("wb") as log:
                self._process = subprocess.Popen(
                    [str(binary), "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # its own session: a Ctrl-C in the terminal reaches only us, and we stop the
                    # broker after the collector has handed it its last acks (not before them)
                    start_new_session=True,
                )
        except OSError as err:
            raise self._failure(f"cannot run {binary}: {err}") from err
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                raise self._failure(f"mosquitto exited with status {code}", self._mosquitto_log())
            if port_accepts(self._port):
                return
            if time.monotonic() > deadline:
                raise self._failure(
                    f"port not open after {self.start_timeout_s:g} s", self._mosquitto_log()
                )
            time.sleep(POLL_INTERVAL_S)

    # -- amqtt ---------------------------------------------------------------------------------

    def _amqtt_config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{self._port}"}},
            # Listing plugins replaces amqtt's defaults: no packet logger (it formats every packet)
            # and no $SYS publisher, only anonymous authentication.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as err:
            raise MissingExtraError("demo", "amqtt") from err
        self._started.clear()
        self._start_error = None
        self._thread = threading.Thread(
            target=self._run_amqtt, args=(Broker,), name=f"amqtt-broker-{self._port}", daemon=True
        )
        self._thread.start()
        # Broker.start() returns after asyncio.start_server() has bound and listens, so no TCP
        # probe is needed (amqtt would log an empty probe connection as an error).
        if not self._started.wait(self.start_timeout_s):
            raise self._failure(f"not started after {self.start_timeout_s:g} s")
        if self._start_error is not None:
            err = self._start_error
            raise self._failure(_amqtt_cause(err)) from err

    def _run_amqtt(self, broker_class: Any) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve_amqtt(broker_class))
        except BaseException as err:  # reported to start(); a thread has nobody else to tell
            if not self._started.is_set():
                self._start_error = err
                self._started.set()
            else:
                logger.warning("the embedded amqtt broker stopped: %s", err)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve_amqtt(self, broker_class: Any) -> None:
        self._stop_event = asyncio.Event()
        broker = broker_class(self._amqtt_config())
        await broker.start()
        self._started.set()
        try:
            await self._stop_event.wait()
        finally:
            await broker.shutdown()

    def _stop_amqtt(self, thread: threading.Thread) -> None:
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("the embedded amqtt broker did not stop within %g s", STOP_TIMEOUT_S)
        self._stop_event = None


def _amqtt_cause(err: BaseException) -> str:
    """The innermost cause of an amqtt start failure (amqtt wraps the OSError)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)
