"""Joining or starting Ray with local defaults, and shutting down only what we started."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from typing import Iterator

import ray

from ..errors import DopeError

log = logging.getLogger(__name__)

LOCAL = "local"
WORKER_NICENESS_VARIABLE = "RAY_worker_niceness"  # read by the raylet that a local ray.init starts
CONNECT_TIMEOUT_S = 3.0  # ray.init retries an unreachable address for minutes; we check first
_connected_pid: int | None = None  # the process whose Ray connection this module saw or made


def _check_reachable(address: str) -> None:
    """One DopeError at once when nothing listens at host:port (ray:// client addresses too)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise DopeError(f"ray: '{address}' is not 'local' or a cluster address host:port")
    if not 0 < int(port) < 65536:
        raise DopeError(f"ray: '{address}': port {port} is not a TCP port (1-65535)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise DopeError(f"ray: cannot reach a Ray cluster at {address} ({err.strerror or err})") from None


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect this process to Ray; returns True when it started a local Ray instance.

    `address` 'local' or None: reuse this process's connection if any, else start Ray here with
    `num_cpus` (default: the machine's CPU count) and no dashboard. Otherwise join that cluster.
    """
    global _connected_pid
    if ray.is_initialized():
        if _connected_pid not in (None, os.getpid()):
            raise DopeError(
                "ray: this process is a fork of one connected to Ray, which cannot work; start DataLoader "
                "workers with multiprocessing_context='spawn'"
            )
        _connected_pid = os.getpid()
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": True, "configure_logging": True}
    if address in (None, LOCAL):
        cpus = num_cpus or os.cpu_count() or 1
        log.info("starting local Ray with %d CPUs", cpus)
        # Ray starts its workers at niceness 15 (to keep the driver responsive); here the renderer
        # actors are what the trainer waits on, and at 15 a training process on the same cores
        # starved them (the trainer waited for frames; seen with `dope train --stream` on 2 cores).
        os.environ.setdefault(WORKER_NICENESS_VARIABLE, "0")
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
        _connected_pid = os.getpid()
        return True
    _check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise DopeError(f"ray: cannot join the Ray cluster at {address}: {err}") from None
    _connected_pid = os.getpid()
    return False


def cluster_address() -> str:
    """The GCS address of the connected cluster, for other processes (DataLoader workers) to join."""
    return ray.get_runtime_context().gcs_address


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray connected for the block; shut down afterwards only when the block started it."""
    started = connect(address, num_cpus)
    try:
        yield
    finally:
        if started:
            disconnect()


def disconnect() -> None:
    global _connected_pid
    ray.shutdown()
    _connected_pid = None
