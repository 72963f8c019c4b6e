"""The artifacts layout keeps the names every earlier `streamrec train` wrote, so existing
artifacts directories go on loading."""

from __future__ import annotations

from pathlib import Path

from streamrec.config import Settings
from streamrec.streams.core.artifacts import Artifacts

#: The names on disk as `streamrec train` has written them (a rename breaks old artifacts).
WRITTEN = {
    "item_vectors": "item_vectors.npz",
    "index": "index",
    "reranker": "reranker.onnx",
    "reranker_int8": "reranker.int8.onnx",
    "teacher": "teacher.onnx",
    "popular": "popular.msgpack",
    "covis": "covis.npz",
    "report": "report.json",
    "sasrec": "sasrec.onnx",
    "sasrec_meta": "sasrec.json",
}


def test_every_file_keeps_its_name_inside_the_directory(tmp_path: Path) -> None:
    layout = Artifacts(str(tmp_path))
    assert layout.dir == tmp_path
    assert {key: path.name for key, path in layout.files().items()} == WRITTEN
    assert all(path.parent == tmp_path for path in layout.files().values())
    assert layout.manifest == tmp_path / "manifest.json"


def test_a_reranker_setting_names_a_file_inside_it_and_empty_means_none(tmp_path: Path) -> None:
    layout = Artifacts(tmp_path)
    assert layout.model(Settings().engine_reranker) == layout.reranker
    assert layout.model("student-b.onnx") == tmp_path / "student-b.onnx"
    assert layout.model("") is None
