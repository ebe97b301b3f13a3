"""Finished units as small gzip-compressed JSON files, resumable runs, and reading saved results.

A finished unit is stored as ``<folder>/units/<name>.json.gz``: compact JSON (``settings``,
``result``, ``meta``) compressed by :func:`hypergrad.io.json_gz_bytes`, deterministically (the
same content gives the same bytes), because the paper-scale unit files are committed and plain
JSON made them 2.6 times larger. Files of the older form, plain ``<name>.json``, are still
read (:func:`unit_file` prefers the ``.json.gz`` when both exist) and
:func:`compact_units` (``python -m hypergrad.experiments compact-units <dir>``) converts them.
What is not a finished unit stays plain JSON: LRS-OPT progress (``<name>.partial.json``),
checkpoint tags (``<name>.ckpt.json``), locks and ``results.json``.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hypergrad.dynamics import DivergenceError
from hypergrad.io import atomic_write_json, atomic_write_json_gz, run_metadata
from hypergrad.loop import select_hyper_lr
from hypergrad.lrs_opt import LrsOptResult

__all__ = ['select_kappa', 'MissingUnit', 'UnitStore', 'result_dir', 'load_results', 'float32_trace', 'Unit', 'compute_batched',
           'UNIT_SUFFIX', 'LEGACY_SUFFIX', 'read_unit_file', 'unit_name', 'unit_file',
           'unit_files', 'compact_units', 'remove_stale_temporary_files', 'plan_groups',
           'alone', 'unit_group', 'cpu_model']


# =========================================================================== unit store
def _jsonable(obj):
    """``obj`` with tuples as lists, tensors as lists and non-finite floats as ``None``."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


#: the suffix of a finished unit's file (gzip-compressed compact JSON)
UNIT_SUFFIX = ".json.gz"
#: the suffix of a finished unit's file of the older form, plain JSON (still read)
LEGACY_SUFFIX = ".json"
#: files of ``units/`` that end like a unit file and are not one (what :func:`unit_name` skips)
_NOT_UNITS = (".partial", ".ckpt")


def _read_json(path: Path):
    """The JSON in ``path`` (gzip-compressed when its name ends with ``.gz``), or ``None`` when
    it cannot be read as such (truncated, corrupt, binary, a folder)."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return json.loads(f.read().decode("utf-8"))
        return json.loads(path.read_text())
    except (ValueError, OSError, EOFError, zlib.error):  # BadGzipFile is an OSError
        return None


def read_unit_file(path: str | os.PathLike) -> dict | None:
    """The content of a unit file, ``<name>.json.gz`` or the legacy ``<name>.json`` (told by
    the name), or ``None`` when it cannot be read as a JSON object (truncated, corrupt gzip,
    not JSON, a list, a folder). Whether it holds a unit (a ``"result"`` dict) is the caller's
    to check."""
    data = _read_json(Path(path))
    return data if isinstance(data, dict) else None


def unit_name(path: str | os.PathLike) -> str | None:
    """The unit a file of ``units/`` belongs to, if it is a finished unit's file:
    ``"x"`` for ``x.json.gz`` and ``x.json``; ``None`` for anything else (``x.partial.json``,
    ``x.ckpt.json``, ``x.json.stale``, ``x.lock``)."""
    file = Path(path).name
    for suffix in (UNIT_SUFFIX, LEGACY_SUFFIX):
        if file.endswith(suffix) and len(file) > len(suffix):
            name = file[:-len(suffix)]
            return None if name.endswith(_NOT_UNITS) else name
    return None


def _units_dir(folder: str | os.PathLike) -> Path:
    """``folder`` when it is named ``units``, else ``folder/units``."""
    folder = Path(folder)
    return folder if folder.name == "units" else folder / "units"


def unit_file(folder: str | os.PathLike, name: str) -> Path | None:
    """The file of the unit ``name``: ``folder`` is a run's folder (its units in
    ``folder/units/``) or a folder named ``units``. ``<name>.json.gz`` when it exists, else the
    legacy ``<name>.json``, else ``None``; every reader of unit files goes through this, so
    that a unit present in both forms is read from one file only."""
    units = _units_dir(folder)
    for suffix in (UNIT_SUFFIX, LEGACY_SUFFIX):
        path = units / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def unit_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Every unit's file in ``folder`` (a run's folder or its ``units``), by unit name in
    sorted order, one file per unit (:func:`unit_file`'s: the ``.json.gz`` when both forms
    exist)."""
    units = _units_dir(folder)
    found: dict[str, Path] = {}
    if not units.is_dir():
        return found
    for path in sorted(units.iterdir()):
        name = unit_name(path)
        if name is not None and (name not in found or path.name.endswith(UNIT_SUFFIX)):
            found[name] = path
    return dict(sorted(found.items()))


def _same(a, b) -> bool:
    """Whether two parsed JSON values are the same (as JSON text: ``NaN`` equals itself)."""
    return json.dumps(a) == json.dumps(b)


def compact_units(root: str | os.PathLike) -> dict:
    """Rewrite every finished unit file of the legacy form under ``root`` (any
    ``units/<name>.json`` below it, or in it when ``root`` is a ``units`` folder) as
    ``<name>.json.gz``, and delete the ``.json`` once the ``.json.gz`` reads back as the same
    content. LRS-OPT progress, checkpoint tags and files that hold no unit (no ``"result"``
    dict) are left as they are. A ``.json`` whose ``.json.gz`` already holds the same content
    (an interrupted conversion) is deleted; one whose ``.json.gz`` holds other content is left
    (the ``.json.gz`` is the one read) and counted in ``conflicts``. Safe to interrupt (the
    ``.json.gz`` is written atomically before the ``.json`` is deleted) and to run again.

    Returns ``{"converted", "skipped", "conflicts": [paths], "bytes_before", "bytes_after"}``
    (the sizes of the files converted, before and after)."""
    root = Path(root)
    out = {"converted": 0, "skipped": 0, "conflicts": [], "bytes_before": 0, "bytes_after": 0}
    for path in sorted(root.rglob(f"*{LEGACY_SUFFIX}")):
        name = unit_name(path)
        if name is None or path.parent.name != "units" or not path.is_file():
            continue
        data = read_unit_file(path)
        if data is None or not isinstance(data.get("result"), dict):
            out["skipped"] += 1
            continue
        target = path.with_name(name + UNIT_SUFFIX)
        size = path.stat().st_size
        if target.exists():
            if not _same(read_unit_file(target), data):
                out["conflicts"].append(str(path))
                continue
        else:
            atomic_write_json_gz(target, data)
            if not _same(read_unit_file(target), data):
                target.unlink()
                raise OSError(f"{target} does not read back as {path}: nothing converted")
        path.unlink()
        out["converted"] += 1
        out["bytes_before"] += size
        out["bytes_after"] += target.stat().st_size
    return out


#: how old a temporary file of ``units/`` must be for :func:`remove_stale_temporary_files`
#: to take it for a killed writer's (a live writer renames its file within seconds)
STALE_TEMPORARY_S = 600.0


def remove_stale_temporary_files(folder: str | os.PathLike,
                                 older_than: float = STALE_TEMPORARY_S) -> list[Path]:
    """Remove the temporary files of :func:`hypergrad.io.atomic_write` (``.<file>.<random>.tmp``)
    from ``folder``'s ``units/`` that were last written more than ``older_than`` seconds ago:
    what a writer killed before it could rename or remove its file (``SIGKILL``, a power cut)
    leaves. They are never read as units (:func:`unit_name` skips them); younger ones may be
    another process's write in progress (several processes may share a folder) and are left.
    Returns the files removed."""
    units = _units_dir(folder)
    removed = []
    if not units.is_dir():
        return removed
    now = time.time()
    for path in units.iterdir():
        if not (path.name.startswith(".") and path.name.endswith(".tmp")):
            continue
        try:
            if now - path.stat().st_mtime > older_than and path.is_file():
                path.unlink()
                removed.append(path)
        except FileNotFoundError:               # renamed or removed by its writer meanwhile
            pass
    return removed


class MissingUnit(LookupError):
    """A read-only :class:`UnitStore` was asked for a unit it does not hold: no file, or a
    file that cannot be read or holds other settings (``reason`` says which)."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"unit {name!r} is not stored ({reason}); a read-only store never "
                         "computes")
        self.name, self.reason = name, reason


class UnitStore:
    """Finished units as small gzip-compressed JSON files in ``folder/units/`` (nothing is
    stored without one): ``<name>.json.gz``, or ``<name>.json`` of the older form, read too.

    ``get`` returns a unit's stored result when its file holds the same settings, and
    otherwise computes, stores and returns it; ``computed``/``loaded`` count both cases.

    ``readonly=True``: the store only reads. ``get`` raises :class:`MissingUnit` instead of
    computing, ``put`` refuses, and a file of other settings is left where it is (never
    moved aside): what the book does with committed results.
    """

    def __init__(self, folder: str | os.PathLike | None, readonly: bool = False):
        self.folder = None if folder is None else Path(folder)
        self.readonly = readonly
        self.computed = 0
        self.loaded = 0
        self.memory: dict[str, tuple[dict, dict]] = {}   # units of this session
        #: seconds each unit took when it was computed (read back from its file when loaded;
        #: ``None`` when not recorded)
        self.wall: dict[str, float | None] = {}

    @staticmethod
    def read_json(path: Path):
        """The JSON in ``path`` (gzip-compressed when its name ends with ``.gz``), or ``None``
        when it cannot be read as JSON (truncated, corrupt, binary, a folder)."""
        return _read_json(Path(path))

    @staticmethod
    def set_aside(path: Path) -> Path:
        """Rename ``path`` to ``<path>.stale`` (``.stale.1``, … if taken): nothing is lost."""
        target, i = path.with_name(path.name + ".stale"), 0
        while target.exists():
            i += 1
            target = path.with_name(f"{path.name}.stale.{i}")
        os.replace(path, target)
        return target

    def _writable(self, name: str) -> None:
        if self.readonly:
            raise PermissionError(f"a read-only UnitStore writes nothing (unit {name!r})")

    def path(self, name: str, suffix: str = UNIT_SUFFIX) -> Path | None:
        """``folder/units/<name><suffix>`` (default: where :meth:`put` writes the unit),
        ``None`` without a folder."""
        return None if self.folder is None else self.folder / "units" / f"{name}{suffix}"

    def file(self, name: str) -> Path | None:
        """The file the unit ``name`` is read from (:func:`unit_file`: the ``.json.gz``, else
        the legacy ``.json``), ``None`` when there is none or no folder."""
        return None if self.folder is None else unit_file(self.folder / "units", name)

    def lookup(self, name: str, unit_settings: dict):
        """The stored result, or ``None`` (a file with other settings is moved aside; then a
        legacy ``.json`` beside it, if any, is the unit's file and is tried in turn).
        ``unit_settings`` are compared as stored (``_jsonable``: tuples as lists), in
        memory as in the file: a unit of this session with other settings is not returned."""
        unit_settings = _jsonable(unit_settings)
        if name in self.memory and self.memory[name][0] == unit_settings:
            return self.memory[name][1]
        while (path := self.file(name)) is not None:
            data = read_unit_file(path)
            if (data is not None and data.get("settings") == unit_settings
                    and isinstance(data.get("result"), dict)):
                self.wall.setdefault(name, (data.get("meta") or {}).get("wall_time_s"))
                return data["result"]
            if self.readonly:
                return None
            self.set_aside(path)   # truncated, foreign or of other settings: kept aside
        return None

    def partial(self, name: str, settings: dict) -> Path | None:
        """Where the unit ``name`` keeps its LRS-OPT progress (:class:`~hypergrad.lrs_opt.LrsOptResult` JSON,
        ``<name>.partial.json``), ``None`` without a folder. A file there that cannot be
        resumed — truncated, foreign, malformed, or saved without the items of ``settings`` —
        is moved aside as ``*.stale``, like a unit file, so that the unit starts afresh."""
        self._writable(name)
        path = self.path(name, ".partial.json")
        if path is None or not path.exists():
            return path
        data = self.read_json(path)
        saved = data.get("settings") if isinstance(data, dict) else None
        ok = isinstance(saved, dict) and all(k in saved and saved[k] == v
                                             for k, v in settings.items())
        if ok:
            try:
                saved = LrsOptResult(**data)
            except TypeError:
                ok = False
            else:
                number = (int, float)
                ok = (isinstance(saved.iterations, int) and not isinstance(saved.iterations, bool)
                      and saved.iterations >= 0 and isinstance(saved.lrs, list) and saved.lrs
                      and all(isinstance(v, number) and not isinstance(v, bool) for v in saved.lrs)
                      and isinstance(saved.history, list) and isinstance(saved.meta, dict))
        if not ok:
            self.set_aside(path)
        return path

    def checkpoint(self, name: str, unit_settings: dict) -> Path | None:
        """Where the unit ``name`` keeps its training checkpoint (``<name>.ckpt.pt``), ``None``
        without a folder. The checkpoint is tagged with the unit's settings
        (``<name>.ckpt.json``, written here): a checkpoint of other settings, without a tag, or
        that cannot be loaded is moved aside as ``*.stale`` (with its tag), so that a run is
        never resumed from another run's state; ``get`` removes the tag once the unit is
        stored."""
        self._writable(name)
        path, tag = self.path(name, ".ckpt.pt"), self.path(name, ".ckpt.json")
        if path is None:
            return None
        unit_settings = _jsonable(unit_settings)
        if path.exists():
            ok = self.read_json(tag) == {"settings": unit_settings}
            if ok:
                try:
                    saved = torch.load(path, weights_only=False, map_location="cpu")
                    ok = isinstance(saved, dict) and "trainer" in saved and "epoch" in saved
                except Exception:  # truncated or foreign: torch raises many kinds
                    ok = False
            if not ok:
                self.set_aside(path)
                if tag.exists():
                    self.set_aside(tag)
        atomic_write_json(tag, {"settings": unit_settings})
        return path

    def load(self, name: str, unit_settings: dict) -> dict | None:
        """The stored result of ``name`` with these settings (counted in ``loaded`` once and
        kept in memory), ``None`` when there is none; a read-only store raises
        :class:`MissingUnit` instead of returning ``None``."""
        unit_settings = _jsonable(unit_settings)   # a copy: the caller may change its dict
        found = self.lookup(name, unit_settings)
        if found is not None:
            if name not in self.memory:
                self.loaded += 1
            self.memory[name] = (unit_settings, found)
            return found
        if self.readonly:
            raise MissingUnit(name, self.why_missing(name))
        return None

    def get(self, name: str, unit_settings: dict, compute: Callable[[], dict]) -> dict:
        unit_settings = _jsonable(unit_settings)
        found = self.load(name, unit_settings)
        if found is not None:
            return found
        start = time.perf_counter()
        result = _jsonable(compute())
        self.put(name, unit_settings, result, time.perf_counter() - start)
        return result

    def why_missing(self, name: str) -> str:
        """Why ``lookup`` found no usable file for ``name`` (for :class:`MissingUnit`)."""
        if self.folder is None:
            return "the store has no folder"
        path = self.file(name)
        if path is None:
            return f"no file {self.path(name)} (nor {self.path(name, LEGACY_SUFFIX).name})"
        data = read_unit_file(path)
        if data is None or not isinstance(data.get("result"), dict):
            return f"{path} is not a unit file"
        return f"{path} holds other settings"

    def put(self, name: str, unit_settings: dict, result: dict, wall: float | None,
            group: dict | None = None) -> None:
        """Store a unit computed elsewhere (e.g. with others, as one population): its file,
        ``<name>.json.gz``, is gzip-compressed compact JSON
        (:func:`~hypergrad.io.atomic_write_json_gz`) with its settings, result and
        :func:`~hypergrad.io.run_metadata` (commit, hardware, threads, wall time), to which are
        added the CPU's model (``cpu``, see :func:`cpu_model`) and the computation the unit
        was part of (``group``: ``{"population": N, "members": [names]}``, see
        :func:`plan_groups`; default :func:`alone`, the unit computed by itself). A legacy
        ``<name>.json`` is deleted (the new file replaces it, as a rewrite would)."""
        self._writable(name)
        unit_settings, result = _jsonable(unit_settings), _jsonable(result)
        self.memory[name] = (unit_settings, result)
        self.wall[name] = wall
        if self.folder is not None:
            meta = run_metadata(wall) | {"cpu": cpu_model(),
                                         "group": _jsonable(group or alone(name))}
            atomic_write_json_gz(self.path(name), {
                "settings": unit_settings, "result": result, "meta": meta})
            self.path(name, LEGACY_SUFFIX).unlink(missing_ok=True)
            self.path(name, ".ckpt.json").unlink(missing_ok=True)   # see checkpoint()
        self.computed += 1


_CPU_MODEL: list[str] = []


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; else ``platform.processor()``),
    recorded in every unit's meta: the kernels a CPU runs, hence a float32 run's rounding,
    depend on it."""
    if not _CPU_MODEL:
        import platform

        name = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        _CPU_MODEL.append(name or platform.processor() or platform.machine())
    return _CPU_MODEL[0]


def alone(name: str) -> dict:
    """The group of a unit computed by itself (not batched): population 1, itself."""
    return {"population": 1, "members": [name]}


def unit_group(data: dict | None) -> dict | None:
    """The group a unit file's content (:func:`read_unit_file`) records in its meta
    (``{"population", "members"}``), or ``None``: *grouping not recorded*, as in the unit
    files written before groups were (they were computed alone or in some population, it
    is not known which)."""
    group = ((data or {}).get("meta") or {}).get("group")
    ok = (isinstance(group, dict) and isinstance(group.get("population"), int)
          and isinstance(group.get("members"), list) and group["members"])
    return group if ok else None


@dataclass(frozen=True)
class Unit:
    """One unit of an experiment: its file ``name``, the ``settings`` that determine it, what
    to ``compute`` (a tuple of plain values the experiment's ``compute_unit`` reads, so that a
    unit can be sent to a worker process) and, for an online run that can be computed with
    others as one population, its ``batch`` description (``seed``, ``lr0``, ``beta``, ``mu``,
    ``kappa``; ``None`` when the unit must run alone)."""

    name: str
    settings: dict
    compute: tuple
    batch: dict | None = None


def plan_groups(units: list[Unit], population: int) -> list[list[Unit]]:
    """The groups (jobs) of a plan, a function of the plan and the population size alone:
    the batchable units (``Unit.batch``) in the plan's order, ``population`` at a time (the
    last group may be smaller), each other unit alone, every group at the place of its first
    member. With ``population`` 1 every unit is alone. Which units are stored plays no part:
    an interrupted and resumed sweep computes the groups an uninterrupted one does, and a
    unit's group (recorded in its meta by :func:`compute_batched`) can be computed again."""
    groups: list[list[Unit]] = []
    open_: list[Unit] | None = None
    for u in units:
        if u.batch is not None and population > 1:
            if open_ is None or len(open_) == population:
                open_ = []
                groups.append(open_)
            open_.append(u)
        else:
            groups.append([u])
    return groups


def compute_batched(task, units: list[Unit], store: UnitStore, population: int,
                    finish: Callable[[Unit, dict], dict],
                    done: Callable[[list[str]], None] | None = None) -> int:
    """Compute the groups of ``units`` (the experiment's whole plan, in its order:
    :func:`plan_groups`) of batchable units with ``population`` > 1 of which a member is not
    stored: each as one :func:`~hypergrad.population.run_population` computation
    (``task.online_many``) of *all* its members, in the group's order, so that a member's
    numbers never depend on which members happened to be pending. Only the members not
    stored are stored (``finish(unit, run)``, each with its share of the wall time and its
    group in the meta); a stored member is never rewritten. ``done(names)`` is called with
    the names stored after each group. Returns the number of units stored."""
    if population <= 1:
        return 0
    n = 0
    for group in plan_groups(units, population):
        if group[0].batch is None:
            continue
        missing = {u.name for u in group if store.lookup(u.name, u.settings) is None}
        if not missing:
            continue
        start = time.perf_counter()
        runs = task.online_many([(task.init_params(u.batch["seed"]), task.batches(u.batch["seed"]),
                                  u.batch["lr0"], u.batch["beta"], u.batch["mu"], u.batch["kappa"])
                                 for u in group])
        share = (time.perf_counter() - start) / len(group)
        record = {"population": population, "members": [u.name for u in group]}
        stored = []
        for u, run in zip(group, runs, strict=True):
            if u.name in missing:
                store.put(u.name, u.settings, finish(u, run), share, group=record)
                stored.append(u.name)
        n += len(stored)
        if done is not None:
            done(stored)
    return n


def float32_trace(values) -> list:
    """A per-step trace rounded to float32 precision, each number written with the fewest
    digits that read back as the same float32 (``None`` for a value that is not finite in
    float32, as one beyond its range): what the
    committed unit files keep of a run's trajectory."""
    import numpy as np

    big = float(np.finfo(np.float32).max)     # beyond it float32 has only inf: None too
    return [float(str(np.float32(v))) if v is not None and math.isfinite(v) and abs(v) <= big
            else None for v in values]


def _bar(total: int, desc: str, progress: bool):
    """A plain-text tqdm bar on stderr (no widget), or a no-op."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr,
                dynamic_ncols=False, ncols=90, mininterval=1.0)


def _seed_key(*parts: int) -> int:
    """A deterministic generator seed from a few small integers."""
    key = 0
    for p in parts:
        key = key * 1_000_003 + int(p)
    return key % (2**63 - 1)


def result_dir(root: str | os.PathLike, experiment: str, scale: str) -> Path:
    """``<root>/<experiment>/<scale>``: where the command line writes an experiment."""
    return Path(root) / experiment / scale


def load_results(experiment: str, scale: str, root: str | os.PathLike = "results") -> dict | None:
    """``<root>/<experiment>/<scale>/results.json`` if it exists, else ``None``."""
    path = result_dir(root, experiment, scale) / "results.json"
    if not path.exists():
        return None
    with open(path) as f:
        return json.load(f)


def select_kappa(run: Callable[[float], dict], start: float, max_tries: int) -> tuple[float, dict]:
    """Section 4's step-size selection for a unit: ``run(κ)`` returns a unit's result dict with
    ``"diverged"``/``"diverged_at"``; try ``κ = start``, then divide by 10 until a run does
    not diverge (:func:`hypergrad.loop.select_hyper_lr`). Returns ``(κ, result)``; raises
    :class:`~hypergrad.dynamics.DivergenceError` when every try diverged."""

    def attempt(kappa: float) -> dict:
        res = run(kappa)
        if res["diverged"]:
            raise DivergenceError(res["diverged_at"], "the run")
        return res

    return select_hyper_lr(attempt, start, factor=10.0, max_tries=max_tries)
