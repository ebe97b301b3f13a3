"""The committed unit files of a long run, read as they are: progress, cost, and the result of the seeds that are complete.

A paper-scale run (``scripts/paper_runs.sh``) stores each finished unit as
``<root>/<experiment>/<scale>/units/<name>.json.gz`` (gzip-compressed JSON: settings, result,
meta; ``<name>.json`` in the older form, read too), and those files are
committed as they come, so a checkout holds a *partial* set for a long time. :func:`committed`
reads them without computing anything: it checks every file against the plan of the current
settings (a file of other settings is reported and never used), counts what is done, sums the
wall times the units recorded, and — when a part has complete seeds — builds the experiment's
result over those seeds with the experiment's own runner on a read-only
:class:`~hypergrad.experiments.store.UnitStore`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from hypergrad.experiments import mnist_schedules, sensitivity
from hypergrad.experiments.settings import settings as default_settings
from hypergrad.experiments.store import (
    UnitStore,
    _jsonable,
    read_unit_file,
    result_dir,
    unit_files,
)

__all__ = ["COMMITTED", "committed", "duration", "progress_text", "run_table", "machine_table"]

#: the experiments whose units :func:`committed` reads
COMMITTED = ("mnist-schedules", "sensitivity")


def _part(experiment: str, name: str) -> str:
    """The part of the run a unit belongs to (what the wall time is summed over)."""
    if experiment == "sensitivity":
        return "adaptive-beta" if name.startswith("sens_adaptive-beta_") else "fixed"
    for part in ("lrs_opt", "fixed", "online", "quality", "noise"):
        if name.startswith(part + "_"):
            return part
    raise ValueError(f"{name!r} is no unit of mnist-schedules")


def _differences(expected: dict, found) -> str:
    """The settings keys on which a file differs from the plan, e.g. ``"T: 500 ≠ 100"``."""
    if not isinstance(found, dict):
        return "no settings"
    keys = sorted(set(expected) | set(found))
    diff = [f"{k}: {found.get(k, '—')} (plan: {expected.get(k, '—')})" for k in keys
            if expected.get(k, None) != found.get(k, None)]
    return "; ".join(diff) or "equal settings"


def _span(metas: list[dict]) -> dict:
    """When the units were computed: first start, last end, the elapsed span, and how many
    units at least were being computed at the same moment (``concurrent``; the worker
    processes are not recorded in the files). A unit's end date is to the second, so its
    interval is taken as ``[end − wall + 1 s, end]``, which it surely covered."""
    spans = []
    for m in metas:
        try:
            end = datetime.strptime(m["date"], "%Y-%m-%dT%H:%M:%S%z")
            spans.append((end - timedelta(seconds=float(m["wall_time_s"])), end))
        except (KeyError, TypeError, ValueError):
            continue
    if not spans:
        return {"first": None, "last": None, "elapsed_s": None, "concurrent": None}
    sure = [(a + timedelta(seconds=1), b) for a, b in spans if a + timedelta(seconds=1) < b]
    events = sorted([(a, 1) for a, _ in sure] + [(b, -1) for _, b in sure],
                    key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    return {"first": first.isoformat(), "last": last.isoformat(),
            "elapsed_s": (last - first).total_seconds(), "concurrent": most}


def _hardware(m: dict) -> str:
    cpu = f"{m.get('cpu_count')} CPU cores ({m.get('processor') or m.get('machine')})"
    return f"{m['cuda']} GPU, {cpu}" if m.get("cuda") else cpu


def committed(experiment: str, root: str | os.PathLike = "results", scale: str = "paper",
              s: dict | None = None) -> dict:
    """What the committed unit files of ``experiment`` at ``scale`` under ``root`` hold.

    Reads ``<root>/<experiment>/<scale>/units/*.json.gz`` (and legacy ``*.json``: one file
    per unit, the ``.json.gz`` when both exist) and computes nothing. ``s``: the
    settings of the plan (default: :func:`~hypergrad.experiments.settings.settings` of ``scale``).
    Returns::

        {"experiment", "scale", "folder", "settings",
         "progress": {"done", "total", "parts": {part: {"done", "total"}},
                      "seeds": {part: [complete seeds]}, "complete": bool,
                      "in_progress": {unit: iterations saved so far (LRS-OPT)}},
         "wall_time_s": {"total", "parts": {part: seconds}},
         "meta": {"hardware", "threads", "commits", "torch", "first", "last", "elapsed_s",
                  "concurrent"},
         "rejected": [{"file", "reason"}],     # files never used (other settings, unreadable)
         "result": dict | None, "result_settings": dict | None}

    ``result`` is the runner's result (:func:`~hypergrad.experiments.sensitivity.run_sensitivity` /
    :func:`~hypergrad.experiments.mnist_schedules.run_mnist_schedules`)
    over a read-only store with the settings restricted to the complete seeds
    (``result_settings``): for ``sensitivity`` the seeds whose whole grid is stored; for
    ``mnist-schedules`` the online seeds whose every online run is stored, the stored LRS-OPT
    seeds, and whatever fixed-η and quality units are stored. It is ``None`` when no seed of
    any part is complete. The wall times are those the units recorded (a unit computed in a
    population records its share), summed over the stored units.
    """
    if experiment not in COMMITTED:
        raise ValueError(f"experiment must be one of {COMMITTED}, got {experiment!r}")
    mod = sensitivity if experiment == "sensitivity" else mnist_schedules
    s = _jsonable(default_settings(experiment, scale) if s is None else s)
    folder = result_dir(root, experiment, scale)
    units_dir = folder / "units"
    plan = {u.name: u for u in mod.plan_units(s)}
    quality_names = ([f"quality_seed{sd}" for sd in s["quality"]["seeds"]]
                     if experiment == "mnist-schedules" else [])
    noise = ({f"noise_seed{sd}": mnist_schedules.noise_settings(s, sd)
              for sd in s["noise"]["seeds"]} if experiment == "mnist-schedules" else {})
    checked = {**{n: u.settings for n, u in plan.items()}, **noise}   # settings known ahead

    valid, metas, rejected, in_progress = {}, {}, [], {}
    partials = sorted(units_dir.glob("*.partial.json")) if units_dir.is_dir() else []
    for path in partials:                                 # LRS-OPT progress within a unit
        data = UnitStore.read_json(path)
        name = path.name[:-len(".partial.json")]
        if isinstance(data, dict) and name in plan and isinstance(data.get("iterations"), int):
            in_progress[name] = data["iterations"]
    files = unit_files(units_dir)        # name -> its one file (.json.gz, else legacy .json)
    for name, path in files.items():
        data = read_unit_file(path)
        if data is None or not isinstance(data.get("result"), dict):
            rejected.append({"file": path.name, "reason": "not a unit file"})
            continue
        if name in quality_names:          # its settings depend on the online results:
            metas[name] = data.get("meta") or {}   # the runner checks them
            continue
        if name not in checked:
            rejected.append({"file": path.name, "reason": "not a unit of the plan"})
            continue
        if data.get("settings") != checked[name]:
            rejected.append({"file": path.name, "reason": "other settings: "
                             + _differences(checked[name], data.get("settings"))})
            continue
        valid[name] = True
        metas[name] = data.get("meta") or {}

    # -- progress and the complete seeds of each part
    parts: dict[str, dict] = {}
    for name in [*plan, *noise, *quality_names]:
        p = parts.setdefault(_part(experiment, name), {"done": 0, "total": 0})
        p["total"] += 1
        p["done"] += name in valid or (name in quality_names and name in metas)
    by_seed: dict[int, list[str]] = {}
    for u in plan.values():
        if experiment == "sensitivity" or u.compute[0] == "online":
            by_seed.setdefault(u.settings["seed"], []).append(u.name)
    whole = [sd for sd, names in sorted(by_seed.items()) if all(n in valid for n in names)]
    if experiment == "sensitivity":
        seeds = {"grid": whole}
        restricted = {**s, "seeds": whole} if whole else None
    else:
        lrs = [sd for sd in s["lrs_opt"]["seeds"] if f"lrs_opt_seed{sd}" in valid]
        fixed = [sd for sd in sorted(by_seed) if f"fixed_seed{sd}" in valid]
        quality = [sd for sd in s["quality"]["seeds"] if f"quality_seed{sd}" in metas]
        noisy = [sd for sd in s["noise"]["seeds"] if f"noise_seed{sd}" in valid and sd in lrs]
        seeds = {"online": whole, "lrs_opt": lrs, "fixed": fixed, "quality": quality,
                 "noise": noisy}
        restricted = None
        if whole or lrs:
            restricted = {**s, "online": {**s["online"], "seeds": whole},
                          "lrs_opt": {**s["lrs_opt"], "seeds": lrs},
                          "noise": {**s["noise"], "seeds": noisy},
                          "quality": {**s["quality"], "seeds": quality}}
    done = sum(p["done"] for p in parts.values())
    total = sum(p["total"] for p in parts.values())

    result = None
    if restricted is not None:
        store = UnitStore(folder, readonly=True)
        runner = (sensitivity.run_sensitivity if experiment == "sensitivity"
                  else mnist_schedules.run_mnist_schedules)
        result = runner(restricted, store=store, progress=False)
        if experiment == "mnist-schedules":       # what the runner could not use
            for name in result.get("missing", []):
                if name in metas and name.startswith("quality"):
                    rejected.append({"file": files[name].name, "reason": "other settings: its "
                                     "β per method are not the best β of the stored online "
                                     "seeds"})
                    parts["quality"]["done"] -= 1
                    done -= 1
                    del metas[name]
            seeds["quality"] = [int(k) for k in result["quality"]]

    # -- cost and machine, from the units' meta
    walls = {n: m.get("wall_time_s") for n, m in metas.items()}
    part_wall: dict[str, float] = {}
    for n, w in walls.items():
        if isinstance(w, int | float):
            part_wall[_part(experiment, n)] = part_wall.get(_part(experiment, n), 0.0) + w
    ms = list(metas.values())
    meta = {"hardware": sorted({_hardware(m) for m in ms}),
            "threads": sorted({m["threads"] for m in ms if isinstance(m.get("threads"), int)}),
            "commits": sorted({m["commit"] for m in ms if isinstance(m.get("commit"), str)}),
            "torch": sorted({m["torch"] for m in ms if isinstance(m.get("torch"), str)}),
            **_span(ms)}

    return {"experiment": experiment, "scale": scale, "folder": str(folder), "settings": s,
            "progress": {"done": done, "total": total, "parts": parts, "seeds": seeds,
                         "complete": done == total, "in_progress": in_progress},
            "wall_time_s": {"total": sum(part_wall.values()), "parts": part_wall},
            "meta": meta, "rejected": rejected, "result": result,
            "result_settings": restricted}


# =========================================================================== for the chapters
def duration(seconds: float | None) -> str:
    """``"45 s"``, ``"12 min"``, ``"3.4 h"`` (``"—"`` for ``None``)."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _seeds(seeds: list) -> str:
    return ", ".join(map(str, seeds)) if seeds else "none"


def progress_text(c: dict) -> str:
    """One sentence: how far the committed run of :func:`committed`'s ``c`` is."""
    p, where = c["progress"], f"`{c['folder'].removeprefix('../')}/units/`"
    if p["done"] == 0:
        return (f"No unit of the {c['scale']}-scale run is committed yet ({where} holds none "
                f"of the {p['total']} units of the plan), so this section has nothing to show. "
                f"`scripts/paper_runs.sh` computes them, resumably, and writes them there.")
    if len(p["seeds"]) == 1:
        (v,) = p["seeds"].values()
        seeds = f"seeds complete: {_seeds(v)}"
    else:
        seeds = "seeds complete, by part: " + "; ".join(
            f"{part.replace('_', ' ')}: {_seeds(v)}" for part, v in p["seeds"].items())
    if p["complete"]:
        return f"The {c['scale']}-scale run is complete: all {p['total']} units are committed."
    text = (f"The {c['scale']}-scale run is partial: {p['done']} of {p['total']} units are "
            f"committed ({seeds}). ")
    if c["result"] is None:
        return text + "No seed is complete yet, so there is nothing to plot or decide."
    return text + ("Everything below is computed from the complete seeds only, and changes "
                   "as more units are committed.")


def run_table(c: dict, labels: dict[str, str] | None = None) -> tuple[list[str], list[list]]:
    """``(header, rows)`` for :func:`~hypergrad.experiments.analysis.md_table`: per part of
    the run, the units committed, the wall time they recorded (summed), and a total row."""
    labels = labels or {}
    p, w = c["progress"], c["wall_time_s"]
    rows = [[labels.get(k, k), f"{v['done']} of {v['total']}", duration(w["parts"].get(k))]
            for k, v in p["parts"].items()]
    rows.append(["all", f"{p['done']} of {p['total']}", duration(w["total"]) if p["done"]
                 else "—"])
    return ["part", "units committed", "wall time (sum over units)"], rows


def machine_table(c: dict) -> tuple[list[str], list[list]]:
    """``(header, rows)``: where and when the committed units were computed, from their meta."""
    m = c["meta"]

    def listed(v):
        return ", ".join(map(str, v)) or "—"

    def when(iso):
        return iso[:16].replace("T", " ") if iso else "—"

    rows = [["hardware", listed(m["hardware"])],
            ["threads per process", listed(m["threads"])],
            ["units computed at the same time (at least)", m["concurrent"] or "—"],
            ["PyTorch", listed(m["torch"])],
            ["commit", listed(h[:7] for h in m["commits"])],
            ["first unit started, last unit finished (UTC offset as recorded)",
             f"{when(m['first'])}, {when(m['last'])}"],
            ["elapsed between them", duration(m["elapsed_s"])]]
    return ["", "committed units"], rows
