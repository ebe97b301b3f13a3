"""Hostile files in the experiments' store (issue 12): truncated, foreign or malformed unit
files (``.json.gz`` or legacy ``.json``) and LRS-OPT ``*.partial.json`` files are set aside as
``*.stale`` (never deleted, never overwritten) and the unit is computed afresh; nothing
raises."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hypergrad import experiments as ex
from tests.helpers import HAS_MNIST

GOOD = {"settings": {"a": 1}, "result": {"x": 2.0}, "meta": {}}


def _units(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "units").iterdir()) if p.is_file()}


def _write(folder: Path, name: str, content) -> Path:
    """``content`` (bytes, text or JSON) to ``folder/units/name``, gzip-compressed when the
    name ends with ``.json.gz``."""
    path = folder / "units" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(content, bytes):
        content = (content if isinstance(content, str) else json.dumps(content)).encode()
    path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    return path


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(GOOD)[:-7],                       # truncated
        b"\x00\xff\xfe binary garbage",              # not text
        "",                                           # empty
        [1, 2, 3],                                    # foreign JSON: a list
        {"something": "else"},                        # foreign JSON: another dict
        {"settings": {"a": 1}},                       # right settings, no result
        {"settings": {"a": 1}, "result": None},       # a null result
        {"settings": {"a": 1}, "result": [1, 2]},     # a result that is not a unit result
        {"settings": {"a": 2}, "result": {"x": 9.0}},  # another run's settings
    ],
    ids=["truncated", "binary", "empty", "list", "foreign", "no-result", "null-result",
         "list-result", "other-settings"],
)
@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_bad_unit_file_is_set_aside_and_recomputed(tmp_path, content, suffix):
    path = _write(tmp_path, "u" + suffix, content)
    before = path.read_bytes()
    store = ex.UnitStore(tmp_path)
    out = store.get("u", {"a": 1}, lambda: {"x": 2.0})
    assert out == {"x": 2.0} and store.computed == 1 and store.loaded == 0
    units = _units(tmp_path)
    assert units[f"u{suffix}.stale"] == before             # the old file is kept as it was
    assert set(units) == {f"u{suffix}.stale", "u.json.gz"}
    assert ex.read_unit_file(tmp_path / "units" / "u.json.gz")["result"] == {"x": 2.0}


def test_unit_path_is_a_folder(tmp_path):
    (tmp_path / "units" / "u.json").mkdir(parents=True)
    assert ex.UnitStore(tmp_path).get("u", {"a": 1}, lambda: {"x": 1.0}) == {"x": 1.0}
    assert (tmp_path / "units" / "u.json.stale").is_dir()


def test_stale_files_are_never_overwritten(tmp_path):
    for i in range(3):
        (tmp_path / "units").mkdir(exist_ok=True)
        (tmp_path / "units" / "u.json.gz").write_bytes(f"broken {i}".encode())
        ex.UnitStore(tmp_path).get("u", {"a": 1}, lambda: {"x": 1.0})
    units = _units(tmp_path)
    assert [units[n] for n in ("u.json.gz.stale", "u.json.gz.stale.1", "u.json.gz.stale.2")] == [
        b"broken 0", b"broken 1", b"broken 2"]


# ---------------------------------------------------------------------- LRS-OPT partial files
UNIT = {"unit": {"seed": 0, "T": 3}}
PARTIAL = {"lrs": [0.1, 0.1, 0.1], "history": [1.0], "iterations": 1,
           "settings": {"T": 3, "step_size": 0.2, **UNIT}, "meta": {"wall_time_s": 1.0}}


def test_valid_partial_file_is_kept(tmp_path):
    path = _write(tmp_path, "lrs.partial.json", PARTIAL)
    assert ex.UnitStore(tmp_path).partial("lrs", UNIT) == path
    assert json.loads(path.read_text()) == PARTIAL
    assert ex.UnitStore(None).partial("lrs", UNIT) is None
    assert ex.UnitStore(tmp_path).partial("other", UNIT) == tmp_path / "units" / "other.partial.json"


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(PARTIAL)[: len(json.dumps(PARTIAL)) // 2],     # truncated (killed mid-write
        "",                                                        # by something else), empty
        b"\x89PNG\r\n",                                            # binary
        [PARTIAL],                                                 # foreign: a list
        {"settings": UNIT},                                        # no progress in it
        {**PARTIAL, "settings": {"unit": {"seed": 1, "T": 3}}},    # another run's unit
        {**PARTIAL, "settings": {"T": 3}},                         # no unit at all
        {**PARTIAL, "settings": "unit"},                           # settings not an object
        {**PARTIAL, "iterations": "1"},
        {**PARTIAL, "iterations": -1},
        {**PARTIAL, "iterations": True},
        {**PARTIAL, "lrs": []},
        {**PARTIAL, "lrs": ["0.1", 0.1, 0.1]},
        {**PARTIAL, "lrs": 0.1},
        {**PARTIAL, "history": None},
        {**PARTIAL, "meta": []},
        {**PARTIAL, "unexpected": 1},                              # not an LrsOptResult
    ],
)
def test_bad_partial_file_is_set_aside(tmp_path, content):
    path = _write(tmp_path, "lrs.partial.json", content)
    before = path.read_bytes()
    assert ex.UnitStore(tmp_path).partial("lrs", UNIT) == path
    assert not path.exists()
    assert (path.parent / "lrs.partial.json.stale").read_bytes() == before


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST files not found in $HYPERGRAD_DATA")
def test_lrs_opt_unit_survives_a_truncated_partial_file(tmp_path):
    """End to end: a truncated progress file used to raise JSONDecodeError in the runner."""
    s = ex.settings("mnist-schedules", "tiny")
    s["lrs_opt"]["iterations"] = 1
    task = ex.MnistTask(s, "cpu")
    partial = _write(tmp_path, "lrs_opt_seed0.partial.json", '{"lrs": [0.1, 0.1')
    r = ex._lrs_opt_unit(task, s, 0, ex.UnitStore(tmp_path), False)
    assert r["iterations"] == 1 and len(r["lrs"]) == s["T"] and r["diverged"] is None
    assert (partial.parent / "lrs_opt_seed0.partial.json.stale").read_text() == '{"lrs": [0.1, 0.1'
    assert not partial.exists() and ex.unit_file(tmp_path, "lrs_opt_seed0") is not None


# ------------------------------------------------------------- training checkpoints (Sec. 6)
def _one_unit_settings():
    s = ex.settings("real-world", "tiny")
    task = next(t for t in s["tasks"] if t["model"] == "mlp")
    task["methods"] = {"exponential": task["methods"]["exponential"]}
    s["tasks"] = [task]
    return s, task, f"{task['name']}_exponential_seed0"


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST files not found in $HYPERGRAD_DATA")
def test_checkpoint_of_another_run_is_not_resumed(tmp_path):
    """A checkpoint left by an interrupted run with other settings (here another learning
    rate) used to be resumed silently under the new settings."""
    s, task, name = _one_unit_settings()
    fresh = ex.run_real_world(s, progress=False)["tasks"][task["name"]]["exponential"]["0"]
    units = tmp_path / "units"
    units.mkdir()
    data = ex._rw_data(task, "cpu")
    other = {**task, "lr": task["lr"] * 30, "epochs": 1}
    ex._train_unit(other, "exponential", task["methods"]["exponential"], 0, data, "cpu",
                   units / f"{name}.ckpt.pt")
    (units / f"{name}.ckpt.json").write_text(json.dumps({"settings": {"other": "run"}}))
    r = ex.run_real_world(s, out_dir=tmp_path, progress=False)
    got = r["tasks"][task["name"]]["exponential"]["0"]
    assert got["val_loss"] == pytest.approx(fresh["val_loss"], rel=1e-6)
    assert (units / f"{name}.ckpt.pt.stale").exists() and (units / f"{name}.ckpt.json.stale").exists()
    assert sorted(p.name for p in units.iterdir()) == sorted(
        [f"{name}.json.gz", f"{name}.ckpt.pt.stale", f"{name}.ckpt.json.stale"])


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"\x80\x04\x95"])
def test_unloadable_checkpoint_is_set_aside(tmp_path, content):
    store = ex.UnitStore(tmp_path)
    unit = {"task": {"lr": 0.1}, "seed": 0}
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / "r.ckpt.pt").write_bytes(content)
    (tmp_path / "units" / "r.ckpt.json").write_text(json.dumps({"settings": unit}))
    path = store.checkpoint("r", unit)
    assert path == tmp_path / "units" / "r.ckpt.pt" and not path.exists()
    assert (tmp_path / "units" / "r.ckpt.pt.stale").read_bytes() == content
    assert json.loads((tmp_path / "units" / "r.ckpt.json").read_text()) == {"settings": unit}


def test_checkpoint_of_the_same_run_is_kept(tmp_path):
    import torch

    store = ex.UnitStore(tmp_path)
    unit = {"task": {"lr": (0.1, 0.2)}, "seed": 0}
    assert store.checkpoint("r", unit) == tmp_path / "units" / "r.ckpt.pt"  # tag written
    torch.save({"trainer": {}, "epoch": 1, "records": {}}, tmp_path / "units" / "r.ckpt.pt")
    assert ex.UnitStore(tmp_path).checkpoint("r", unit).exists()           # resumable: kept
    assert not list((tmp_path / "units").glob("*.stale"))
    ex.UnitStore(tmp_path).checkpoint("r", {**unit, "seed": 1})            # other settings
    assert (tmp_path / "units" / "r.ckpt.pt.stale").exists()
    assert ex.UnitStore(None).checkpoint("r", unit) is None
    store.get("r", unit, lambda: {"x": 1.0})                              # stored: tag removed
    assert not (tmp_path / "units" / "r.ckpt.json").exists()


# ------------------------------------------------ issue 25: one session, other settings
@pytest.mark.parametrize("folder", [True, False], ids=["files", "memory-only"])
def test_one_store_never_returns_a_unit_of_other_settings(tmp_path, folder):
    """Within one store object (one session), a unit asked for again with other settings is
    computed afresh, as a new store does with a file of other settings: the in-memory lookup
    must compare settings too."""
    store = ex.UnitStore(tmp_path if folder else None)
    calls = []

    def compute(x):
        return lambda: calls.append(x) or {"x": x}

    assert store.get("u", {"a": 1}, compute(1.0)) == {"x": 1.0}
    assert store.get("u", {"a": 1}, compute(9.0)) == {"x": 1.0}      # same settings: kept
    assert store.get("u", {"a": 2}, compute(2.0)) == {"x": 2.0}      # other settings: redone
    assert store.lookup("u", {"a": 2}) == {"x": 2.0}
    assert store.lookup("u", {"a": 3}) is None
    assert store.get("u", {"a": 1, "b": [1]}, compute(3.0)) == {"x": 3.0}   # an added item
    assert calls == [1.0, 2.0, 3.0] and store.computed == 3
    if folder:
        assert ex.read_unit_file(store.file("u"))["settings"] == {"a": 1, "b": [1]}
        fresh = ex.UnitStore(tmp_path)         # what a new session reads agrees
        assert fresh.lookup("u", {"a": 1, "b": [1]}) == {"x": 3.0}


def test_one_store_does_not_keep_the_callers_settings_object(tmp_path):
    """The store remembers a unit's settings as they were, not the caller's dict: a caller
    that changes its dict in place and asks again gets no stale result."""
    ex.UnitStore(tmp_path).put("u", {"a": 1, "nested": {"b": 1}}, {"x": 1.0}, None)
    store = ex.UnitStore(tmp_path)
    settings = {"a": 1, "nested": {"b": 1}}
    assert store.load("u", settings) == {"x": 1.0}
    settings["nested"]["b"] = 2                  # the same object, other settings now
    assert store.lookup("u", settings) is None
    settings = {"a": 1, "nested": {"b": 1}}
    store.put("u", settings, {"x": 2.0}, None)
    settings["a"] = 5
    assert store.lookup("u", settings) is None
    assert store.get("u", settings, lambda: {"x": 5.0}) == {"x": 5.0}


def test_a_read_only_store_refuses_other_settings_after_a_load(tmp_path):
    ex.UnitStore(tmp_path).put("u", {"a": 1}, {"x": 1.0}, None)
    store = ex.UnitStore(tmp_path, readonly=True)
    assert store.load("u", {"a": 1}) == {"x": 1.0}
    with pytest.raises(ex.MissingUnit, match="other settings"):
        store.load("u", {"a": 2})
    with pytest.raises(ex.MissingUnit):
        store.get("u", {"a": 2}, lambda: {"x": 2.0})
    assert store.loaded == 1 and store.file("u").exists()


# ------------------------------------------ issue 25: temporary files of killed writers
def test_stale_temporary_files_are_ignored_and_removed(tmp_path):
    import os
    import time

    from hypergrad.experiments.store import remove_stale_temporary_files

    ex.UnitStore(tmp_path).put("u", {"a": 1}, {"x": 1.0}, None)
    old = _write(tmp_path, ".u.json.gz.k3j4.tmp", b"\x1f\x8b half")      # a killed writer's
    young = _write(tmp_path, ".v.json.gz.a1b2.tmp", b"\x1f\x8b")          # a write in progress
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert set(ex.unit_files(tmp_path)) == {"u"}            # never read as units
    assert ex.UnitStore(tmp_path).lookup("u", {"a": 1}) == {"x": 1.0}
    assert remove_stale_temporary_files(tmp_path) == [old]
    assert not old.exists() and young.exists()
    assert remove_stale_temporary_files(tmp_path / "units", older_than=0) == [young]
    assert set(_units(tmp_path)) == {"u.json.gz"}
    assert remove_stale_temporary_files(tmp_path / "nothing") == []


def test_settings_with_tuples_find_their_file(tmp_path):
    """Settings are stored as JSON (tuples as lists); asking with the same settings as tuples
    finds the unit, in memory and in a new session, and never sets its file aside."""
    store = ex.UnitStore(tmp_path)
    store.put("u", {"sizes": (784, 16, 10)}, {"x": 1.0}, None)
    assert store.lookup("u", {"sizes": (784, 16, 10)}) == {"x": 1.0}
    fresh = ex.UnitStore(tmp_path)
    assert fresh.lookup("u", {"sizes": (784, 16, 10)}) == {"x": 1.0}
    assert fresh.get("u", {"sizes": [784, 16, 10]}, lambda: {"x": 2.0}) == {"x": 1.0}
    assert set(_units(tmp_path)) == {"u.json.gz"} and fresh.computed == 0
