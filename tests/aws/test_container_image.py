"""The container image, as far as this machine can build it (no Docker engine here): the built
wheel installed with the image's pinned requirements into a clean virtual environment, exactly as
the Dockerfile's build stage does, runs both of the image's commands."""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _run(*args: str | Path, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtual environment with the image's requirements and our wheel; returns its bin."""
    root = tmp_path_factory.mktemp("image")
    wheels = root / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", wheels, REPO)
    (wheel,) = wheels.glob("fluxion_etl-*.whl")
    requirements = root / "requirements.txt"
    requirements.write_text(_run("sh", REPO / "deploy/aws/image-requirements.sh", REPO))
    env = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile")
    _run(*pip, "--no-deps", "--only-binary=:all:", "-r", requirements)
    _run(*pip, "--no-deps", wheel)
    _run(sys.executable, "-m", "pip", "--python", python, "check")
    return env / "bin"


@pytest.mark.slow
def test_the_image_environment_runs_the_worker_and_the_service(image_env: Path) -> None:
    assert "--run-id" in _run(image_env / "fluxion-etl", "worker", "--help")
    assert "Usage: fluxion-etl serve" in _run(image_env / "fluxion-etl", "serve", "--help")


@pytest.mark.slow
def test_the_image_environment_has_the_ecs_launchers_aws_client(image_env: Path) -> None:
    probe = "import boto3; from fluxion_etl.launchers.ecs import EcsLauncher; print('ok')"
    assert _run(image_env / "python", "-c", probe).strip() == "ok"


def test_the_dockerfile_is_multi_stage_pinned_and_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[1])  # a patch version, not a moving tag
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.MULTILINE)
    assert stages == [("${PYTHON_IMAGE}", "build"), ("${PYTHON_IMAGE}", "")]
    final = text.split("\nFROM ")[-1]
    assert "pip install" not in final  # nothing is built in the final stage
    (user,) = re.findall(r"^USER (\S+)$", final, re.MULTILINE)
    assert not user.startswith(("0", "root"))
    assert 'ENTRYPOINT ["fluxion-etl"]' in final
