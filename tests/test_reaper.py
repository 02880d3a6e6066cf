"""ProcessReaper.close() ends the marked processes even while a forked child holds its pipe open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from dope_stream.processes import REAPER_CLOSE_WAIT_S, ProcessReaper


def test_close_returns_and_reaps_while_a_forked_child_holds_the_pipe():
    reaper = ProcessReaper()
    with reaper.marking():
        marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    holder = os.fork()  # inherits the reaper's pipe, as a fork-context DataLoader worker does
    if holder == 0:
        time.sleep(120)
        os._exit(0)
    try:
        started = time.monotonic()
        reaper.close()
        assert time.monotonic() - started < REAPER_CLOSE_WAIT_S + 10
        marked.wait(timeout=10)  # killed: wait() returns
        assert marked.returncode == -signal.SIGKILL
        assert reaper.process.poll() is not None
        assert os.waitpid(holder, os.WNOHANG) == (0, 0)  # not marked: left alone, still running
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        if marked.poll() is None:
            marked.kill()


def test_close_without_a_pipe_holder_is_quick():
    reaper = ProcessReaper()
    with reaper.marking():
        marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    started = time.monotonic()
    reaper.close()
    marked.wait(timeout=10)
    assert marked.returncode == -signal.SIGKILL
    assert time.monotonic() - started < REAPER_CLOSE_WAIT_S
