"""A worker serves from artifacts without the training stack: the worker's modules, its
Faust app and an engine loaded from an artifacts folder (FAISS index + ONNX reranker) run
in a fresh interpreter where everything only the full install has (requirements/cpu.lock
minus requirements/worker-cpu.lock) cannot be imported, as after `make install-worker`;
and nothing of the `train` and `eval` extras (torch, onnx, ...) is even asked for."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import numpy as np
import pytest
from deploy_files import ROOT, lock_names
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from streamrec.index import build_index
from streamrec.streams.core.features import FEATURE_NAMES

#: What `streamrec worker` imports and does up to consuming, in a subprocess: the CLI,
#: the Faust app with its agents and views, the engine from ARTIFACTS, one micro-batch.
SERVE = """
import importlib.abc, json, sys
from pathlib import Path

absent, asked = set(json.loads(sys.argv[2])), set()

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in absent:
            asked.add(top)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
import streamrec.cli, streamrec.cli.worker
from streamrec.config import Settings
from streamrec.streams.app import create_app
from streamrec.streams.core.loader import load_engine
from streamrec.streams.wire import Event

artifacts = Path(sys.argv[1])
settings = Settings(worker_artifacts_dir=artifacts, worker_store="memory://")
create_app(settings)
engine = load_engine(artifacts, settings)
events = [Event(f"e{n}", "u1", f"i{n}", "click", 1_000 + n) for n in range(3)]
recs = engine.process(events, {})
print(json.dumps({
    "modules": sorted(sys.modules),
    "asked": sorted(asked),
    "scored_by": type(engine.scorer).__name__,
    "items": [len(r.items) for r in recs],
}))
"""


def modules_of(dists: set[str]) -> set[str]:
    """Top-level modules installed by the distributions ``dists`` (canonical names)."""
    return {
        module
        for module, owners in packages_distributions().items()
        if any(canonicalize_name(d) in dists for d in owners)
    }


def full_install_only_modules() -> set[str]:
    """Top-level modules of the packages a worker install does not have."""
    return modules_of(lock_names("cpu.lock") - lock_names("worker-cpu.lock"))


def training_modules() -> set[str]:
    """Top-level modules of the packages the `train` and `eval` extras name."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    return modules_of(
        {canonicalize_name(Requirement(r).name) for r in extras["train"] + extras["eval"]}
    )


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat index and a real tiny student reranker, as `streamrec train` lays them out."""
    torch = pytest.importorskip("torch")  # exporting needs the `train` extra; serving not
    from streamrec.models.export import export_onnx
    from streamrec.models.metadata import ModelMetadata
    from streamrec.models.student import Student, StudentConfig

    out = tmp_path_factory.mktemp("worker-artifacts")
    rng = np.random.default_rng(0)
    ids = [f"i{n}" for n in range(200)]
    build_index(ids, rng.standard_normal((200, 16)).astype(np.float32), kind="flat").save(
        out / "index"
    )
    torch.manual_seed(0)
    model = Student(len(FEATURE_NAMES), StudentConfig(hidden=(8,)))
    rows = rng.random((64, len(FEATURE_NAMES)), np.float32)
    model.set_normalisation(rows)
    meta = ModelMetadata(FEATURE_NAMES, "worker-install-test", "00" * 32)
    export_onnx(model.eval(), {"features": torch.from_numpy(rows)}, out / "reranker.onnx", meta)
    return out


def test_the_full_install_has_packages_a_worker_does_without():
    assert {"torch", "onnx", "scipy", "matplotlib"} <= training_modules()
    assert training_modules() <= full_install_only_modules()


def test_worker_serves_from_artifacts_without_torch_or_training_packages(artifacts: Path):
    absent = json.dumps(sorted(full_install_only_modules()))
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(artifacts), absent],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["scored_by"] == "Scorer"  # the ONNX reranker was loaded and used
    assert report["items"] == [20, 20, 20]
    assert "torch" not in report["modules"]
    # Optional imports of other libraries (aiohttp tries brotli) may ask and do without.
    wanted = set(report["asked"]) & training_modules()
    assert wanted == set(), f"the worker asked for {sorted(wanted)}"
