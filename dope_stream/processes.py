"""Child processes that die with their parent.

A SIGKILL of `dope generate` (or of the trainer) cannot run any clean-up, so the children must notice
by themselves: spawned renderer processes otherwise stay alive, blocked writing results nobody
reads, and keep the multiprocessing resource tracker alive with them (it exits once every process
holding its pipe is gone). Every pool and DataLoader worker calls `die_with_parent` first.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 1.0  # where prctl is missing: how often a watchdog thread checks the parent


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
