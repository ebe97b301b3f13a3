"""Unit files stored gzip-compressed (``<name>.json.gz``) and the legacy plain ``<name>.json``.

The committed results were 18.8 MB of plain JSON; a finished unit is now written as compact
JSON compressed deterministically (the same content gives the same bytes, so a rewrite is no
change in git). Everything that reads units reads both forms, the ``.json.gz`` first;
``compact-units`` converts a folder, and what the chapters read (:func:`committed`) is the
same before and after, on a copy of the committed units.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import pytest

import hypergrad.experiments as ex
from hypergrad.io import atomic_write_json_gz, json_gz_bytes
from tests.helpers import write_unit_file

ROOT = Path(__file__).resolve().parent.parent
UNIT = {"settings": {"a": 1, "b": [0.1, 2]},
        "result": {"x": 0.1 + 0.2, "trace": [1e-300, -0.0, 3.4028234663852886e38, None],
                   "name": "μ = 0.9 ✓"},
        "meta": {"wall_time_s": 1.5}}


def _units(folder: Path) -> Path:
    units = folder / "units"
    units.mkdir(parents=True, exist_ok=True)
    return units


# ------------------------------------------------------------------ the format
def test_gz_round_trip_is_the_same_content_as_compact_json(tmp_path):
    path = tmp_path / "u.json.gz"
    atomic_write_json_gz(path, UNIT)
    assert ex.read_unit_file(path) == UNIT
    raw = gzip.decompress(path.read_bytes()).decode("utf-8")
    assert raw == json.dumps(UNIT, separators=(",", ":"))      # compact: no whitespace
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_same_content_gives_the_same_bytes(tmp_path):
    a, b = tmp_path / "a" / "u.json.gz", tmp_path / "b" / "v.json.gz"
    atomic_write_json_gz(a, UNIT)
    time.sleep(1.1)                                  # a date in the header would differ now
    atomic_write_json_gz(b, json.loads(json.dumps(UNIT)))
    assert a.read_bytes() == b.read_bytes() == json_gz_bytes(UNIT)
    header = a.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"             # gzip, deflate
    assert header[3] == 0                            # no flags: no file name, no comment
    assert header[4:8] == b"\x00\x00\x00\x00"        # mtime 0
    assert header[8] == 2                            # compresslevel 9 ("slowest")
    assert json_gz_bytes({**UNIT, "meta": {"wall_time_s": 1.6}}) != a.read_bytes()


def test_the_store_writes_json_gz_and_reads_it_back(tmp_path):
    store = ex.UnitStore(tmp_path)
    store.put("u", UNIT["settings"], UNIT["result"], 1.0)
    units = tmp_path / "units"
    assert sorted(p.name for p in units.iterdir()) == ["u.json.gz"]
    assert store.file("u") == store.path("u") == units / "u.json.gz"
    data = ex.read_unit_file(units / "u.json.gz")
    assert data["settings"] == UNIT["settings"] and data["result"] == UNIT["result"]
    again = ex.UnitStore(tmp_path, readonly=True)
    assert again.get("u", UNIT["settings"], lambda: pytest.fail("computed")) == UNIT["result"]
    assert again.wall["u"] == 1.0


@pytest.mark.parametrize("readonly", [False, True])
def test_a_legacy_json_unit_is_still_read(tmp_path, readonly):
    write_unit_file(_units(tmp_path) / "u.json", UNIT)
    store = ex.UnitStore(tmp_path, readonly=readonly)
    assert store.get("u", UNIT["settings"], lambda: pytest.fail("computed")) == UNIT["result"]
    assert store.loaded == 1 and store.file("u") == tmp_path / "units" / "u.json"
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == ["u.json"]   # untouched


def test_put_replaces_a_legacy_json(tmp_path):
    write_unit_file(_units(tmp_path) / "u.json", UNIT)
    ex.UnitStore(tmp_path).put("u", {"a": 2}, {"x": 1.0}, None)
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == ["u.json.gz"]


@pytest.mark.parametrize("readonly", [False, True])
def test_when_both_forms_exist_the_json_gz_wins(tmp_path, readonly):
    units = _units(tmp_path)
    write_unit_file(units / "u.json.gz", UNIT)
    write_unit_file(units / "u.json", {**UNIT, "result": {"x": "legacy"}})
    store = ex.UnitStore(tmp_path, readonly=readonly)
    assert store.get("u", UNIT["settings"], lambda: pytest.fail("computed")) == UNIT["result"]
    assert ex.unit_file(tmp_path, "u") == ex.unit_file(units, "u") == units / "u.json.gz"
    assert ex.unit_files(tmp_path) == {"u": units / "u.json.gz"}
    assert len(list(units.iterdir())) == 2                   # nothing moved


def _truncated_gz() -> bytes:
    whole = json_gz_bytes(UNIT)
    return whole[:len(whole) // 2]


CORRUPT = {
    "truncated-gzip": _truncated_gz(),
    "not-gzip": json.dumps(UNIT).encode(),                   # plain JSON named .json.gz
    "garbage": b"\x1f\x8b\x08\x00 garbage",
    "empty": b"",
    "gzip-of-truncated-json": gzip.compress(json.dumps(UNIT).encode()[:-5]),
    "gzip-of-a-list": gzip.compress(b"[1, 2]"),
}


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_a_corrupt_json_gz_is_treated_as_a_corrupt_json(tmp_path, content):
    """As a bad ``.json`` is: ``lookup`` gives ``None``, a writable store sets the file aside
    as ``.stale`` (kept as it was) and recomputes; a read-only store leaves it in place and
    raises :class:`MissingUnit` with a reason."""
    path = _units(tmp_path) / "u.json.gz"
    path.write_bytes(content)
    assert ex.read_unit_file(path) is None
    ro = ex.UnitStore(tmp_path, readonly=True)
    assert ro.lookup("u", UNIT["settings"]) is None
    with pytest.raises(ex.MissingUnit, match="is not a unit file") as e:
        ro.get("u", UNIT["settings"], lambda: pytest.fail("a read-only store computed"))
    assert e.value.reason == f"{path} is not a unit file" and path.read_bytes() == content

    store = ex.UnitStore(tmp_path)
    assert store.lookup("u", UNIT["settings"]) is None
    assert not path.exists() and (path.parent / "u.json.gz.stale").read_bytes() == content
    assert store.get("u", UNIT["settings"], lambda: {"x": 2.0}) == {"x": 2.0}
    assert ex.read_unit_file(path)["result"] == {"x": 2.0} and store.computed == 1


def test_a_corrupt_json_gz_set_aside_uncovers_the_legacy_json(tmp_path):
    units = _units(tmp_path)
    (units / "u.json.gz").write_bytes(_truncated_gz())
    write_unit_file(units / "u.json", UNIT)
    store = ex.UnitStore(tmp_path)
    assert store.get("u", UNIT["settings"], lambda: pytest.fail("computed")) == UNIT["result"]
    assert sorted(p.name for p in units.iterdir()) == ["u.json", "u.json.gz.stale"]


def test_no_file_names_both_forms(tmp_path):
    with pytest.raises(ex.MissingUnit, match=r"no file .*u\.json\.gz \(nor u\.json\)"):
        ex.UnitStore(tmp_path, readonly=True).get("u", {}, lambda: pytest.fail("computed"))
    assert ex.unit_file(tmp_path, "u") is None and ex.unit_files(tmp_path) == {}


def test_unit_names_leave_out_what_is_not_a_finished_unit():
    names = {f: ex.unit_name(f) for f in (
        "a.json.gz", "a.json", "a_seed0.json", "b.partial.json", "b.ckpt.json", "b.ckpt.pt",
        "b.json.stale", "b.json.gz.stale.1", "b.lock", ".json", ".json.gz", "b.partial.json.gz")}
    assert names == {"a.json.gz": "a", "a.json": "a", "a_seed0.json": "a_seed0",
                     "b.partial.json": None, "b.ckpt.json": None, "b.ckpt.pt": None,
                     "b.json.stale": None, "b.json.gz.stale.1": None, "b.lock": None,
                     ".json": None, ".json.gz": None, "b.partial.json.gz": None}


# ------------------------------------------------------------------ compact-units
def _legacy_folder(root: Path) -> dict[str, bytes]:
    """Two runs' unit folders in the legacy form, with what must be left alone; returns the
    bytes of the files that must not change."""
    left = {}
    for run in ("exp-a/paper", "exp-b/tiny"):
        units = _units(root / run)
        for i in range(3):
            write_unit_file(units / f"u{i}.json", {**UNIT, "result": {"i": i, "v": [0.5] * 50}})
        (units / "lrs.partial.json").write_text(json.dumps({"iterations": 3, "lrs": [0.1]}))
        (units / "r.ckpt.json").write_text(json.dumps({"settings": {"a": 1}}))
        (units / "foreign.json").write_text(json.dumps({"settings": {}, "result": [1]}))
        (units / "broken.json").write_text('{"settings": {"a"')
        (units / "old.json.stale").write_text("stale")
        (root / run / "results.json").write_text(json.dumps({"result": {"a": 1}}))
        for p in [*units.iterdir(), root / run / "results.json"]:
            if not p.name.startswith("u"):
                left[str(p.relative_to(root))] = p.read_bytes()
    return left


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_compact_units_converts_and_leaves_the_rest(tmp_path):
    left = _legacy_folder(tmp_path)
    before = {str(p.relative_to(tmp_path)): ex.read_unit_file(p)
              for p in tmp_path.rglob("u*.json")}
    size = sum(p.stat().st_size for p in tmp_path.rglob("u*.json"))
    out = ex.compact_units(tmp_path)
    assert out["converted"] == 6 and out["skipped"] == 4 and out["conflicts"] == []
    assert out["bytes_before"] == size
    assert out["bytes_after"] == sum(p.stat().st_size for p in tmp_path.rglob("*.json.gz"))
    assert out["bytes_after"] < out["bytes_before"]
    after = _snapshot(tmp_path)
    assert {k: after[k] for k in left} == left                   # untouched, byte for byte
    for rel, data in before.items():
        assert rel not in after                                   # the .json is gone
        assert ex.read_unit_file(tmp_path / (rel + ".gz")) == data
    # idempotent: a second run changes nothing
    again = ex.compact_units(tmp_path)
    assert again["converted"] == 0 and again["skipped"] == 4
    assert _snapshot(tmp_path) == after


def test_compact_units_finishes_an_interrupted_conversion(tmp_path):
    units = _units(tmp_path)
    write_unit_file(units / "done.json", UNIT)
    atomic_write_json_gz(units / "done.json.gz", UNIT)       # written, .json not yet deleted
    write_unit_file(units / "clash.json", UNIT)
    atomic_write_json_gz(units / "clash.json.gz", {**UNIT, "result": {"x": 1}})
    out = ex.compact_units(tmp_path)
    assert out["converted"] == 1 and out["conflicts"] == [str(units / "clash.json")]
    assert sorted(p.name for p in units.iterdir()) == ["clash.json", "clash.json.gz",
                                                       "done.json.gz"]


def test_compact_units_keeps_the_json_when_the_gz_does_not_read_back(tmp_path, monkeypatch):
    units = _units(tmp_path)
    write_unit_file(units / "u.json", UNIT)
    monkeypatch.setattr("hypergrad.experiments.store.atomic_write_json_gz",
                        lambda path, obj: Path(path).write_bytes(_truncated_gz()))
    with pytest.raises(OSError, match="does not read back"):
        ex.compact_units(tmp_path)
    assert sorted(p.name for p in units.iterdir()) == ["u.json"]
    assert ex.read_unit_file(units / "u.json") == UNIT


def test_the_compact_units_command(tmp_path, capsys):
    _legacy_folder(tmp_path)
    assert ex.main(["compact-units", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "6 unit files converted" in out and "4 files that hold no unit" in out
    assert ex.main(["compact-units", str(tmp_path)]) == 0
    assert "0 unit files converted" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        ex.main(["compact-units", str(tmp_path / "nowhere")])
    assert e.value.code == 2


# ------------------------------------------------------------------ on the committed units
def _canonical(c: dict) -> str:
    return json.dumps(c, sort_keys=True, default=str)


@pytest.mark.parametrize("experiment", ["sensitivity", "mnist-schedules"])
def test_committed_reads_the_same_after_compact_units(tmp_path, experiment):
    """:func:`committed` over a copy of the committed units: the same summary from the legacy
    files, from a folder half converted, and from the converted one."""
    src = ROOT / "results" / experiment / "paper" / "units"
    if not ex.unit_files(src):
        pytest.skip(f"no committed {experiment} units")
    units = tmp_path / experiment / "paper" / "units"
    shutil.copytree(src, units)
    for p in units.glob("*.json.gz"):                  # start from the legacy form
        write_unit_file(p.with_name(p.name[:-3]), ex.read_unit_file(p))
        p.unlink()
    n = len(ex.unit_files(units))
    before = ex.committed(experiment, root=tmp_path)
    assert before["progress"]["done"] > 0

    names = sorted(ex.unit_files(units))
    for name in names[::2]:                            # half converted, half legacy
        atomic_write_json_gz(units / f"{name}.json.gz", ex.read_unit_file(units / f"{name}.json"))
        (units / f"{name}.json").unlink()
    assert _canonical(ex.committed(experiment, root=tmp_path)) == _canonical(before)

    out = ex.compact_units(tmp_path)
    assert out["converted"] == n - len(names[::2]) and out["conflicts"] == []
    assert not [p for p in units.glob("*.json")
                if ex.unit_name(p) is not None]          # only .partial/.ckpt .json left
    assert len(ex.unit_files(units)) == n
    after = ex.committed(experiment, root=tmp_path)
    assert _canonical(after) == _canonical(before)
