"""Joining or starting Ray with local defaults, and shutting down only what we started.

Token authentication (Ray >= 2.52; on by default for clusters Ray starts): the token comes from
where Ray itself looks, highest precedence first: `RAY_AUTH_TOKEN`, the file named by
`RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`. Ray enables token mode for an explicit cluster address
only when `RAY_AUTH_MODE=token` is set; here a token found in those places enables it too (Ray's
own rule for clusters it finds by itself), which also works with clusters that do not check
tokens. Before `ray.init` (which retries a rejected token for about 20 s and then names neither
cause nor fix), one RPC to the cluster's GCS checks the token and turns a rejection into a DopeError.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import ray

from ..errors import DopeError
from ..processes import ProcessReaper

log = logging.getLogger(__name__)

LOCAL = "local"
WORKER_NICENESS_VARIABLE = "RAY_worker_niceness"  # read by the raylet that a local ray.init starts
CONNECT_TIMEOUT_S = 3.0  # ray.init retries an unreachable address for minutes; we check first
AUTH_MODE_VARIABLE, TOKEN_VARIABLE, TOKEN_PATH_VARIABLE = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")  # Ray's default token file (`ray get-auth-token`)
_connected_pid: int | None = None  # the process whose Ray connection this module saw or made
_reaper: ProcessReaper | None = None  # kills the local Ray instance's processes when we die


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


def token_source() -> str:
    """Where Ray reads the token from, for messages: the variable, or the file it names."""
    if os.environ.get(TOKEN_VARIABLE):
        return TOKEN_VARIABLE
    if os.environ.get(TOKEN_PATH_VARIABLE):
        return f"{TOKEN_PATH_VARIABLE} ({os.environ[TOKEN_PATH_VARIABLE]})"
    return str(DEFAULT_TOKEN_FILE.expanduser())


def _token_header() -> dict[str, str]:
    """{"authorization": "Bearer TOKEN"} as Ray sends it when a token is configured, else {}.

    A token found while `RAY_AUTH_MODE` is unset switches this process (and the processes it starts)
    to token mode, as Ray does for local clusters; Ray's own helper for that logs a warning meant
    for clusters it starts, hence the two lines here.
    """
    from ray._raylet import AuthenticationTokenLoader, Config
    from ray.exceptions import AuthenticationError

    loader = AuthenticationTokenLoader.instance()
    try:
        if AUTH_MODE_VARIABLE not in os.environ and loader.has_token(ignore_auth_mode=True):
            os.environ[AUTH_MODE_VARIABLE] = "token"
            Config.initialize("")  # Ray caches its settings: make it read the mode again
        return loader.get_token_for_http_header()
    except AuthenticationError as err:  # e.g. RAY_AUTH_TOKEN_PATH names a missing or empty file
        raise DopeError(f"ray: no usable authentication token: {err.message}") from None


def _check_token(address: str) -> None:
    """One DopeError when the cluster's GCS rejects our token (or the lack of one)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    header = _token_header()
    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=CONNECT_TIMEOUT_S, metadata=list(header.items()))
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise _token_rejected(address, sent_token=bool(header)) from None
            # anything else is not a token problem: ray.init reports it


def _token_rejected(address: str, sent_token: bool) -> DopeError:
    fix = "`ray get-auth-token` on the head node prints the cluster's token"
    needs = f"ray: the Ray cluster at {address} requires token authentication"
    if sent_token:
        return DopeError(f"ray: the Ray cluster at {address} rejected the token from {token_source()}: "
                         f"set {TOKEN_VARIABLE} to the cluster's token ({fix})")
    if os.environ.get(AUTH_MODE_VARIABLE, "").lower() == "disabled":
        return DopeError(f"{needs} but {AUTH_MODE_VARIABLE} is 'disabled' here: set {AUTH_MODE_VARIABLE}=token "
                         f"and {TOKEN_VARIABLE} ({fix})")
    return DopeError(f"{needs} and no token was found: set {TOKEN_VARIABLE} (or {TOKEN_PATH_VARIABLE}) or write "
                     f"it to {DEFAULT_TOKEN_FILE.expanduser()} ({fix})")


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect this process to Ray; returns True when it started a local Ray instance.

    `address` 'local' or None: reuse this process's connection if any, else start Ray here with
    `num_cpus` (default: the machine's CPU count) and no dashboard. Otherwise join that cluster.
    """
    global _connected_pid, _reaper
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
        # Ray's agents outlive a killed driver by up to a minute (see dope_stream.processes).
        _reaper = ProcessReaper()
        with _reaper.marking():
            try:
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
            except Exception as err:  # what ray.init raises when its processes do not come up in time
                raise DopeError(f"ray: the local Ray instance did not start: {err}") from None
        _connected_pid = os.getpid()
        return True
    _check_reachable(address)
    if not address.startswith("ray://"):  # a Ray client server is not a GCS
        _check_token(address)
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
    global _connected_pid, _reaper
    ray.shutdown()
    _connected_pid = None
    if _reaper is not None:
        _reaper.close()
        _reaper = None
