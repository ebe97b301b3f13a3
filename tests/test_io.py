"""Results on disk: atomic writes and run metadata."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from hypergrad.io import atomic_save, atomic_write_json, run_metadata, source_commit


def test_atomic_write_json_and_save(tmp_path):
    path = tmp_path / "sub" / "r.json"
    atomic_write_json(path, {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})             # fails half-way through json.dump
    assert json.loads(path.read_text()) == {"a": [1, 2]}     # the old file is intact
    atomic_save(tmp_path / "t.pt", {"x": torch.arange(3)})
    assert torch.equal(torch.load(tmp_path / "t.pt")["x"], torch.arange(3))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_run_metadata_reads_the_commit_without_git(tmp_path):
    root = Path(__file__).resolve().parent.parent
    try:
        want = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=root, timeout=10).stdout.strip() or None
    except OSError:
        pytest.skip("git is not installed")
    assert source_commit() == want
    meta = run_metadata(1.23456)
    assert meta["commit"] == want and meta["wall_time_s"] == 1.235 and meta["torch"] == torch.__version__
    assert run_metadata(commit="abc")["commit"] == "abc"
    assert source_commit(tmp_path) is None                   # not a checkout
