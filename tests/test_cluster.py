"""A real two-node Ray cluster with token authentication, on loopback addresses only.

Two `ray start --block` processes (a head and a worker node, one CPU each) form the cluster;
`dope generate --ray` and a `RayFrameDataset` driver join it as users would, in processes of their
own. Ray replaces `--node-ip-address 127.0.0.1` by the machine's interface address (it reads
127.0.0.1 as "this host" and advertises what other hosts would reach), but takes any other loopback
address as given: the head is 127.0.0.2, the worker node 127.0.0.3 (Linux routes all of 127/8 to
`lo`), so every address the nodes advertise, and every connection, stays on loopback.
"""

from __future__ import annotations

import filecmp
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster_stream import frame_digest
from conftest import tiny_generate_config
from dope_stream.generate import generate
from dope_stream.stream.dataset import read_shard

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
NB_FRAMES, FRAMES_PER_SHARD = 40, 4
NODE_START_TIMEOUT_S = 120.0
NODE_START_ATTEMPTS = 3


@dataclass
class Cluster:
    address: str
    token: str
    home: Path  # HOME of every process here: no token file unless a test writes one
    nodes: dict[str, subprocess.Popen]  # node IP -> its `ray start --block`

    def env(self, **variables: str | None) -> dict[str, str]:
        """The environment of a process on this machine; a variable set to None is removed."""
        env = {**os.environ, "HOME": str(self.home), "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
        for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
            env.pop(name, None)
        env.update(variables)
        return {name: value for name, value in env.items() if value is not None}

    def kill_node(self, ip: str) -> None:
        """SIGKILL every process of the node at once, as when its machine dies."""
        for pid in session_processes(self.nodes[ip].pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.nodes[ip].wait(timeout=30)


def proc_stat(pid: str) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    return (Path("/proc") / pid / "stat").read_text().rpartition(")")[2].split()


def session_processes(session: int) -> list[int]:
    """Processes of the session a node's `ray start` leads (start_new_session): the node's Ray
    processes, its workers (they leave the process group, not the session) and orphans of a failed start."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc_stat(entry.name)[3]) == session:
                pids.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return pids


def remote_addresses(pids: list[int]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Peer addresses of the TCP connections these processes hold (/proc/net/tcp{,6} by socket inode)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            peer_hex = fields[2].partition(":")[0]
            if fields[9] in inodes and int(peer_hex, 16):  # listening sockets have no peer
                # the kernel prints each 32-bit word of the address in host (little-endian) order
                raw = b"".join(bytes.fromhex(peer_hex[i : i + 8])[::-1] for i in range(0, len(peer_hex), 8))
                peers.add(ipaddress.ip_address(raw))
    return peers


def node_table(address: str, token: str) -> list:
    """The GCS's node table, read the way Ray's clients do (token in the authorization header)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        reply = stub.GetAllNodeInfo(
            gcs_service_pb2.GetAllNodeInfoRequest(), timeout=5, metadata=[("authorization", f"Bearer {token}")]
        )
    return list(reply.node_info_list)


def free_port(ip: str) -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def start_node(cluster: Cluster, ip: str, temp: Path, head: bool) -> None:
    role = ["--head", "--port", cluster.address.rpartition(":")[2], "--include-dashboard", "false"] if head else [
        "--address", cluster.address
    ]
    command = ["ray", "start", "--block", *role, "--node-ip-address", ip, "--num-cpus", "1", "--disable-usage-stats",
               "--temp-dir", str(temp / ip)]
    # Fast node-death detection (default 5 missed checks 3 s apart), so the test does not wait 15 s.
    env = cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token, RAY_health_check_period_ms="1000")
    with open(temp / f"{ip}.log", "ab") as log:
        cluster.nodes[ip] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_nodes(cluster: Cluster, count: int) -> list | None:
    """The alive nodes once there are `count`; None when a node's `ray start` gave up."""
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while time.monotonic() < deadline and all(node.poll() is None for node in cluster.nodes.values()):
        try:
            alive = [node for node in node_table(cluster.address, cluster.token) if node.state == 0]
            if len(alive) == count:
                return alive
        except Exception:  # the GCS is not listening yet
            pass
        time.sleep(0.5)
    return None


def start_cluster(cluster: Cluster, temp: Path) -> list:
    """Head, then worker node; again from scratch when `ray start` gives up (it waits at most 30 s
    for its raylet, which a machine shared by many test runs can exceed)."""
    for _ in range(NODE_START_ATTEMPTS):
        start_node(cluster, HEAD_IP, temp, head=True)
        if wait_for_nodes(cluster, 1) is not None:
            start_node(cluster, WORKER_IP, temp, head=False)
            nodes = wait_for_nodes(cluster, 2)
            if nodes is not None:
                return nodes
        for ip in list(cluster.nodes):
            cluster.kill_node(ip)
        cluster.nodes.clear()
    logs = "\n".join(log.read_text(errors="replace")[-2000:] for log in temp.glob("*.log"))
    pytest.fail(f"the two-node Ray cluster did not start in {NODE_START_ATTEMPTS} attempts:\n{logs}")


@pytest.fixture(scope="module")
def cluster():
    temp = Path(tempfile.mkdtemp(prefix="dope-ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    (temp / "home").mkdir()
    cluster = Cluster(f"{HEAD_IP}:{free_port(HEAD_IP)}", secrets.token_hex(16), temp / "home", {})
    try:
        nodes = start_cluster(cluster, temp)
        assert sorted(node.node_manager_address for node in nodes) == [HEAD_IP, WORKER_IP]
        yield cluster
    finally:
        for ip in cluster.nodes:
            cluster.kill_node(ip)
        shutil.rmtree(temp, ignore_errors=True)


def cluster_config(out: Path, ray: str | None, **overrides):
    """The frames every test here renders (`dope_generate` passes the same options)."""
    values = dict(nb_frames=NB_FRAMES, frames_per_shard=FRAMES_PER_SHARD, nb_distractors=2, seed=5, workers=2)
    values.update(overrides)
    return tiny_generate_config(out, ray=ray, **values)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The dataset of a plain local run (no Ray)."""
    return generate(cluster_config(tmp_path_factory.mktemp("local") / "dataset", ray=None, workers=1))


def dope_generate(cluster: Cluster, out: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "dope_app.cli", "generate", "--ray", cluster.address, "--out", str(out),
               "--nb_frames", str(NB_FRAMES), "--frames_per_shard", str(FRAMES_PER_SHARD), "--width", "64",
               "--height", "64", "--nb_objects", "1,2", "--nb_distractors", "2", "--spp", "1", "--seed", "5",
               "--workers", "2", "--scene", "flying"]  # as tiny_generate_config: the default is tabletop
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def finished(run: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = run.communicate(timeout=300)
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)


def assert_same_shards(folder: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.glob("shard-*.tar"))
    assert len(names) == NB_FRAMES // FRAMES_PER_SHARD
    assert sorted(p.name for p in folder.glob("shard-*.tar")) == names
    for name in names:
        assert filecmp.cmp(folder / name, reference / name, shallow=False), f"{name} differs from the local run"


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_missing_or_wrong_token_is_one_line_naming_the_fix(cluster, tmp_path):
    runs = [  # side by side: each is mostly Python start-up
        dope_generate(cluster, tmp_path / "a", cluster.env()),
        dope_generate(cluster, tmp_path / "b", cluster.env(RAY_AUTH_TOKEN="not-the-token")),
        dope_generate(cluster, tmp_path / "c", cluster.env(RAY_AUTH_TOKEN_PATH=str(tmp_path / "none"))),
    ]
    missing, wrong, gone = (one_error_line(finished(run)) for run in runs)
    assert "requires token authentication" in missing and "RAY_AUTH_TOKEN" in missing
    assert str(cluster.home / ".ray" / "auth_token") in missing
    assert "rejected the token from RAY_AUTH_TOKEN" in wrong
    assert "RAY_AUTH_TOKEN_PATH" in gone and str(tmp_path / "none") in gone


def test_generate_with_the_token_file_equals_the_local_run(cluster, reference, tmp_path):
    token_file = cluster.home / ".ray" / "auth_token"  # Ray's default place; RAY_AUTH_MODE left unset
    token_file.parent.mkdir(exist_ok=True)
    token_file.write_text(cluster.token)
    try:
        result = finished(dope_generate(cluster, tmp_path / "generated", cluster.env()))
    finally:
        token_file.unlink()
    assert result.returncode == 0, result.stderr
    assert_same_shards(tmp_path / "generated", reference)


def loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_stream_from_both_nodes_survives_killing_one(cluster, reference, tmp_path):
    config = cluster_config(tmp_path / "streamed", cluster.address, stream_buffer=4)
    config_file = tmp_path / "stream.yaml"
    config_file.write_text(config.to_yaml())
    # The consumer takes 0.3 s a frame: the second node's actor (a new worker process loading the
    # assets) then delivers well before the end; at 0.1 s the first node once rendered 38 of 40 first.
    driver = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "cluster_stream.py"), str(config_file), "0.3"],
        env=cluster.env(RAY_AUTH_TOKEN=cluster.token), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        start_new_session=True,
    )
    frames, killed_after = {}, None
    try:
        for line in driver.stdout:
            if not line.startswith("REPORT "):
                continue  # Ray's output
            report = json.loads(line.removeprefix("REPORT "))
            if "key" not in report:
                break
            assert report["key"] not in frames, f"frame {report['key']} arrived twice"
            frames[report["key"]] = report["digest"]
            if killed_after is None and report["nodes"] == 2 and len(frames) >= 4:
                peers = remote_addresses([pid for root in (*cluster.nodes.values(), driver) for pid in session_processes(root.pid)])
                assert peers and all(loopback(peer) for peer in peers), peers
                cluster.kill_node(WORKER_IP)
                killed_after = len(frames)
        driver.wait(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 0, driver.stderr.read()
    assert killed_after is not None, "no frame came from the second node before the end"
    assert killed_after <= NB_FRAMES - 8, killed_after  # mid-run: frames were still to hand out

    assert sorted(frames) == [f"{i:06d}" for i in range(NB_FRAMES)]  # every frame exactly once
    stats = report
    assert len(stats["frames_by_node"]) == 2 and sum(stats["frames_by_node"].values()) == NB_FRAMES
    assert stats["replaced"] >= 1, (killed_after, stats)
    local = {
        sample["__key__"]: frame_digest(sample)
        for shard in sorted(reference.glob("shard-*.tar"))
        for sample in read_shard(shard)
    }
    assert frames == local  # the streamed frames are the local run's, decoded pixels and annotations alike
    assert_same_shards(config.out, reference)
