"""docker/ checked without a Docker engine: the files the images copy exist, the images install the
README's way (install.sh) and start the real entry point, and the compose file's settings are keys the
entry point knows."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from dope_app.container import known_keys

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.cuda"]
ENTRYPOINT = DOCKER / "entrypoint.sh"
COMPOSE = DOCKER / "docker-compose.yml"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and directives dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def base_image(steps: list[tuple[str, str]]) -> str:
    """The FROM image, with `${ARG}` replaced by the ARG's default (what users get without --build-arg)."""
    defaults = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    base = next(a for k, a in steps if k == "FROM")
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], base)


def copy_sources(arguments: str) -> list[str]:
    words = [w for w in shlex.split(arguments) if not w.startswith("--")]
    return words[:-1]


def ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) or parts[:1] == (p,) for p in patterns
    )


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    steps = instructions(dockerfile)
    copies = [arguments for keyword, arguments in steps if keyword in ("COPY", "ADD")]
    assert copies, "the image copies nothing from the repository"
    patterns = dockerignore_patterns()
    for arguments in copies:
        assert "--from" not in arguments
        for source in copy_sources(arguments):
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY source {source} is not in the repository"
            assert source == "." or not ignored(source, patterns), f"{source} is excluded by .dockerignore"
    # what `COPY .` must bring: the installer, the project metadata and every package
    for needed in ("install.sh", "pyproject.toml", "dope_stream", "trainer", "infer", "docker/entrypoint.sh"):
        assert (REPO / needed).exists() and not ignored(needed, patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_install_the_readme_way_and_run_the_entry_point(dockerfile):
    steps = instructions(dockerfile)
    runs = [arguments for keyword, arguments in steps if keyword == "RUN"]
    assert sum(bool(re.search(r"(^|\s)bash install\.sh(\s|$)", run)) for run in runs) == 1
    assert not any("pip install" in run or "pip3 install" in run for run in runs), "install through install.sh only"
    copy_index = next(i for i, (k, a) in enumerate(steps) if k == "COPY")
    install_index = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "install.sh" in a)
    assert copy_index < install_index and steps[install_index - 1][0] == "COPY"
    workdir = next(a for k, a in steps[:copy_index][::-1] if k == "WORKDIR")
    entrypoint = yaml.safe_load(next(a for k, a in steps if k == "ENTRYPOINT"))
    assert entrypoint == [f"{workdir}/docker/entrypoint.sh"]
    base = base_image(steps)
    assert ":" in base and not base.endswith(":latest"), "pin the base image"


def test_base_images_carry_libllvm19_and_the_cuda_image_asks_for_the_drivers_graphics():
    cpu_base = base_image(instructions(DOCKERFILES[0]))
    cuda_steps = instructions(DOCKERFILES[1])
    cuda_base = base_image(cuda_steps)
    # install.sh apt-installs libllvm19: Debian 12 and Ubuntu 24.04 have it, older releases do not
    assert cpu_base.endswith("-bookworm") and cuda_base.startswith("nvidia/cuda:") and "ubuntu24.04" in cuda_base
    assert "libllvm19" in (REPO / "install.sh").read_text()
    environment = " ".join(a for k, a in cuda_steps if k == "ENV")
    capabilities = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", environment).group(1)
    assert capabilities == "all" or {"graphics", "compute", "utility"} <= set(capabilities.split(","))


def test_entrypoint_script_dispatches_to_the_container_program(tmp_path):
    assert os.access(ENTRYPOINT, os.X_OK)
    env = {**os.environ, "DOPE_SM_ROOT": str(tmp_path)}
    run = lambda *args: subprocess.run(["bash", str(ENTRYPOINT), *args], capture_output=True, text=True, env=env, timeout=120)  # noqa: E731
    echoed = run("echo", "ray", "start")
    assert echoed.returncode == 0 and echoed.stdout == "ray start\n"  # other commands run as given
    for args in (["train", "--nb_frame", "5"], ["--nb_frame", "5"]):  # SageMaker's `train`, or options
        result = run(*args)
        assert result.returncode == 2, result.stderr
        assert "unknown key 'nb_frame' (did you mean 'nb_frames'?)" in result.stderr and "Traceback" not in result.stderr
    assert run("serve").returncode == 2


def test_compose_runs_a_ray_head_workers_and_a_streaming_trainer():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert "ray start --head --port=6379" in services["head"]["command"]
    assert "ray start --address=head:6379" in services["worker"]["command"]
    trainer = services["trainer"]
    assert "ray start --address=head:6379" in trainer["command"] and "python -m dope_app.container" in trainer["command"]
    settings = {name: value for name, value in trainer["environment"].items() if not name.startswith("RAY_AUTH_")}
    assert settings["DOPE_GENERATOR"] == "streaming" and settings["DOPE_RAY"] == "head:6379"
    for name in settings:
        assert name.startswith("DOPE_") and name.removeprefix("DOPE_").lower() in known_keys(), name
    for service in services.values():  # every node and the driver carry the cluster's token
        assert service["environment"]["RAY_AUTH_MODE"] == "token"
        assert service["environment"]["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?")
        build = service["build"]
        context = COMPOSE.parent / build["context"]
        dockerfile = re.sub(r"\$\{\w+:-([^}]+)\}", r"\1", build["dockerfile"])  # the default of ${VAR:-default}
        assert (context / dockerfile).is_file() and context.resolve() == REPO


def test_documented_commands_name_files_that_exist():
    readme = (DOCKER / "README.md").read_text()
    named = set(re.findall(r"docker/[\w.\-]+", readme))
    assert {"docker/Dockerfile.cpu", "docker/Dockerfile.cuda", "docker/docker-compose.yml"} <= named
    for path in named:
        assert (REPO / path).exists(), path
    for key in re.findall(r"DOPE_([A-Z_]+)=", readme):
        assert key.lower() in known_keys() + ["sm_root", "config"], key


@pytest.mark.parametrize("script", ["build-base.sh", "build-cpu.sh", "check-image.sh"])
def test_build_and_check_scripts_are_executable_bash(script):
    # they run for real only with a Docker engine (tests/test_docker_image.py)
    path = DOCKER / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert path.name in (DOCKER / "README.md").read_text()
