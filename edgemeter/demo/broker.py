"""A private MQTT broker on a free loopback port, for ``edgemeter demo`` and for tests.

:class:`PrivateBroker` runs a ``mosquitto`` binary when one is installed (MQTT 5 and 3.1.1; started
through :class:`edgemeter.demo.mosquitto.Mosquitto`, the one launcher every test broker uses too), and
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
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from edgemeter.demo.loopback import HOST, STOP_TIMEOUT_S, free_port, port_accepts, stop_process
from edgemeter.demo.mosquitto import Mosquitto, anonymous_config, find_mosquitto
from shared.errors import BrokerError, MissingExtraError

logger = logging.getLogger(__name__)

BrokerKind = Literal["mosquitto", "amqtt"]
Preference = Literal["auto", "mosquitto", "amqtt"]

__all__ = ["PrivateBroker", "find_mosquitto", "free_port", "port_accepts", "stop_process"]

DEFAULT_START_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 3
PORT_TRIES = 3
"""Starts on a fresh free port when another process took the chosen one before mosquitto bound it."""


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
        self._mosquitto_process: Mosquitto | None = None
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
        if self._mosquitto_process is not None:
            return self._mosquitto_process.running
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
        if self._mosquitto_process is not None:
            self._mosquitto_process.stop()
            self._mosquitto_process = None
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

    def _start_mosquitto(self, binary: Path) -> None:
        """Through the one launcher; on a fresh port if another process took a port we picked."""
        assert self._workdir is not None and self._port is not None
        for attempt in range(1, PORT_TRIES + 1):
            process = Mosquitto(
                self._workdir, anonymous_config(self._port), ports=[self._port], binary=binary,
                name="private mosquitto broker", start_timeout_s=self.start_timeout_s,
            )
            try:
                self._mosquitto_process = process.start()
                return
            except BrokerError:
                lost_race = "address already in use" in process.log().lower()
                if self._requested_port is not None or not lost_race or attempt == PORT_TRIES:
                    raise
                logger.debug("port %d was taken before mosquitto bound it; trying another", self._port)
                process.log_file.unlink(missing_ok=True)
                self._port = free_port()

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
