"""Child processes that die with their parent.

A SIGKILL of `dope generate` (or of the trainer) cannot run any clean-up, so the children must notice
by themselves: spawned renderer processes otherwise stay alive, blocked writing results nobody
reads, and keep the multiprocessing resource tracker alive with them (it exits once every process
holding its pipe is gone). Every pool and DataLoader worker calls `die_with_parent` first.

Processes we do not start ourselves cannot call it: a local Ray instance's raylet starts its
dashboard and runtime-env agents and its workers. Ray kills its own direct children with the
driver, but the agents, finding the raylet gone, first try to report that to the (equally dead)
GCS, for up to a minute. `ProcessReaper` covers them: a small process that, once the process that
started it dies, kills every process carrying its mark in the environment (inherited by everything
started while the mark is set).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 1.0  # where prctl is missing: how often a watchdog thread checks the parent
REAPER_MARK_VARIABLE = "DOPE_REAPER_MARK"
REAP_ROUNDS = 20  # re-scans after killing (a process may start while the others die)
REAPER_CLOSE_WAIT_S = 5.0  # close(): how long the reaper may take before this process reaps itself
PROC = Path("/proc")


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit as soon as `parent_pid` (the process that started it) dies.

    Linux: the kernel sends SIGKILL when the parent *thread* that started this process ends, so
    start workers from a thread that lives as long as they do (the main thread). Elsewhere: a
    daemon thread polls the parent id.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            _start_watchdog(parent_pid)
    else:
        _start_watchdog(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def loader_worker_init(parent_pid: int, worker_id: int) -> None:
    """`DataLoader(worker_init_fn=functools.partial(loader_worker_init, os.getpid()))`."""
    die_with_parent(parent_pid)


def _start_watchdog(parent_pid: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="die-with-parent").start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


# --- processes started by others ------------------------------------------------------------------


def processes_with_environment(variable: str, value: str) -> list[int]:
    """Live (non-zombie) processes, other than this one, whose environment holds variable=value
    (Linux /proc; elsewhere none are found)."""
    marker = f"{variable}={value}".encode()
    found = []
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and not _is_zombie(entry):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _is_zombie(entry: Path) -> bool:
    return (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z"


class ProcessReaper:
    """Kills the processes started under `marking()` when this process dies or calls `close()`.

    The reaper process reads a pipe only this process writes to: end of file means this process
    has gone (the kernel closes the pipe even after SIGKILL). It runs in a session of its own, so a
    Ctrl-C in the terminal leaves it to clean up after the interrupted command.
    """

    def __init__(self) -> None:
        self.mark = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, self.mark], stdin=subprocess.PIPE, start_new_session=True
        )

    @contextmanager
    def marking(self) -> Iterator[None]:
        """Processes started in the block (and everything they start) carry the mark."""
        previous = os.environ.get(REAPER_MARK_VARIABLE)
        os.environ[REAPER_MARK_VARIABLE] = self.mark
        try:
            yield
        finally:
            if previous is None:
                del os.environ[REAPER_MARK_VARIABLE]
            else:
                os.environ[REAPER_MARK_VARIABLE] = previous

    def close(self) -> None:
        """Kill what is left of the marked processes now, and end the reaper.

        A child forked from this process without exec (a fork-context DataLoader worker) holds the
        pipe's write end too, so the reaper may never see its end: after REAPER_CLOSE_WAIT_S this
        process reaps the marked processes itself and kills the reaper."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=REAPER_CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            reap(self.mark)
            self.process.kill()
            self.process.wait()


def reap(mark: str) -> None:
    """SIGKILL every process marked `mark`, until none is left."""
    for _ in range(REAP_ROUNDS):
        marked = processes_with_environment(REAPER_MARK_VARIABLE, mark)
        if not marked:
            return
        for pid in marked:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # already gone
                continue
        time.sleep(0.05)


if __name__ == "__main__":  # the reaper process: wait for the end of the pipe, then reap
    sys.stdin.buffer.read()
    reap(sys.argv[1])
