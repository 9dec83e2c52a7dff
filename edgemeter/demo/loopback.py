"""Loopback ports and child processes for the services the demo (and the test suite) runs locally.

The one place that picks a free port, waits for a port to accept connections and stops a child
process, so the demo's broker, the test brokers, NATS nodes and collector subprocesses all do it
the same way::

    port = free_port()                      # the OS picks a port nothing listens on now
    wait_for_ports([port], process, 10.0)   # True once it accepts; False if the process exited
    stop_process(process)                   # SIGTERM, then SIGKILL after a timeout
    raise_fd_limit(8192)                    # room for many sockets (in a child: before exec)
"""

from __future__ import annotations

import logging
import resource
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.02
PROBE_TIMEOUT_S = 0.5


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on ``port`` of ``host`` (the loopback host)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROBE_TIMEOUT_S)
        return sock.connect_ex((host, port)) == 0


def wait_for_ports(
    ports: Sequence[int], process: subprocess.Popen[Any] | None, timeout_s: float
) -> list[int]:
    """Poll until every port accepts; return the ports that still do not (empty: all ready).

    Returns early, with the ports still closed, when ``process`` (the server being waited for)
    has exited or ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    waiting = list(ports)
    while True:
        waiting = [port for port in waiting if not port_accepts(port)]
        if not waiting or (process is not None and process.poll() is not None):
            return waiting
        if time.monotonic() > deadline:
            return waiting
        time.sleep(POLL_INTERVAL_S)


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


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (capped by the hard limit).

    Returns the soft limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
