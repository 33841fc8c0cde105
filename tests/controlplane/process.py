"""Start, identify and stop the control plane's processes; pick free loopback ports."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessRecord:
    """A started process, identified by pid plus its kernel start time.

    The start time guards against killing an unrelated process that reused the pid after
    ours exited (state files outlive processes).
    """

    name: str
    pid: int
    start_ticks: int
    log: str

    def is_running(self) -> bool:
        """True while this very process exists and has not exited (zombies count as gone)."""
        stat = _read_stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] != "Z"

    def stop(self, grace_seconds: float = 15.0) -> None:
        """SIGTERM, wait up to ``grace_seconds``, then SIGKILL; return once it is gone.

        An exited child of this process stays a zombie until its parent waits for it.
        """
        if not self.is_running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if not _wait_gone(self, grace_seconds):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _wait_gone(self, 10.0)


def spawn(
    name: str, argv: list[str], log: Path, *, detached: bool, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start ``argv`` with output to ``log``.

    Attached processes get SIGKILL from the kernel if the Python process dies without
    cleaning up (a safety net beneath atexit: with etcd gone too, a SIGTERMed API server
    would wait for its own graceful shutdown); detached ones (``up``) outlive it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=None if detached else _die_with_parent,
        )
    stat = _read_stat(proc.pid)
    ticks = stat[1] if stat else 0
    return proc, ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, log=str(log))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``port`` at 127.0.0.1.

    SO_REUSEADDR lets the bind succeed past connections in TIME_WAIT (the API server
    closes connections first, leaving them on its port) but not past a live listener.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def tail(path: Path | str, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _read_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) from /proc/PID/stat, or None if no such pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _wait_gone(record: ProcessRecord, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not record.is_running():
            return True
        time.sleep(0.05)
    return False
