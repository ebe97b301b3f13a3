"""The command line: ``python -m hypergrad.experiments {mnist-schedules,real-world,sensitivity} --scale … --out …``.

``python -m hypergrad.experiments compact-units <dir>`` converts the unit files of the older
form (plain ``units/<name>.json``) under ``<dir>`` to ``<name>.json.gz``
(:func:`~hypergrad.experiments.store.compact_units`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from hypergrad.experiments.lr_free import run_lr_free
from hypergrad.experiments.mnist_schedules import run_mnist_schedules
from hypergrad.experiments.parallel import (
    PARALLEL,
    PopulationMismatch,
    Stopped,
    check_population,
    choose_population,
    pending_jobs,
    recorded_population,
    run_in_workers,
    run_on_ray,
    stop_on_signals,
    usable_cores,
)
from hypergrad.experiments.per_layer import run_per_layer
from hypergrad.experiments.protocol import run_mnist_protocol
from hypergrad.experiments.real_world import run_real_world
from hypergrad.experiments.sensitivity import run_sensitivity
from hypergrad.experiments.settings import EXPERIMENTS, SCALES, settings
from hypergrad.experiments.store import _jsonable, compact_units, load_results, result_dir
from hypergrad.io import atomic_write_json, run_metadata

__all__ = ['RUNNERS', 'run', 'load_or_run', 'main']


# =========================================================================== files and CLI
RUNNERS = {"mnist-schedules": run_mnist_schedules, "mnist-protocol": run_mnist_protocol,
           "real-world": run_real_world,
           "sensitivity": run_sensitivity, "per-layer": run_per_layer,
           "lr-free": run_lr_free, "lr-free-cnn": run_lr_free, "lr-free-cifar": run_lr_free}


def run(experiment: str, s: dict | None = None, scale: str = "quick",
        out_dir: str | os.PathLike | None = None, device="cpu", progress: bool = True,
        population: int = 1, meta: dict | None = None) -> dict:
    """Run ``experiment`` (settings ``s``, default those of ``scale``); with ``out_dir``, resume
    from its unit files and write ``results.json`` there (settings, results, metadata, and
    ``meta``'s items). ``population`` > 1 (mnist-schedules, sensitivity): the online units
    that allow it N at a time, batched, in the groups of the plan
    (:func:`~hypergrad.experiments.store.plan_groups`); a results folder keeps the population
    of its first start (:func:`~hypergrad.experiments.parallel.check_population`: another one
    raises :class:`~hypergrad.experiments.parallel.PopulationMismatch` while batchable units
    are pending)."""
    s = settings(experiment, scale) if s is None else s
    if out_dir is not None and experiment in PARALLEL and any(
            g[0].batch is not None for g in pending_jobs(experiment, s, out_dir, population)):
        check_population(experiment, s, out_dir, population)
    start = time.perf_counter()
    extra = {"population": population} if population != 1 else {}
    result = RUNNERS[experiment](s, out_dir=out_dir, device=device, progress=progress, **extra)
    result["meta"] = run_metadata(time.perf_counter() - start)
    result["meta"]["device"] = str(device)
    result["meta"].update(meta or {})
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "results.json", _jsonable(result))
    return result


def load_or_run(experiment: str, scale: str, root: str | os.PathLike = "results", device="cpu",
                progress: bool = True, prefer: tuple[str, ...] = ("paper",)) -> dict:
    """What a chapter shows: saved results of a scale in ``prefer`` (paper first) if any are
    present under ``root``, else those of ``scale``, else a fresh run at ``scale`` (not saved).
    """
    for sc in (*prefer, scale):
        found = load_results(experiment, sc, root)
        if found is not None:
            found.setdefault("meta", {})["loaded_from"] = str(result_dir(root, experiment, sc))
            return found
    return run(experiment, scale=scale, device=device, progress=progress)


class _SettingError(ValueError):
    """A ``--set`` that names no setting or gives it a value of the wrong kind."""


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, int | float):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


#: the settings whose number may be replaced by ``null`` (it means "none": no cap)
_NULLABLE = frozenset({"lrs_opt.max_lr"})


def _conform(key: str, old, new) -> None:
    """Refuse a ``--set`` value that cannot stand where ``old`` stands in the settings: another
    kind of JSON value (a string where a number or list goes, a float where an integer goes),
    a non-finite number, a negative one where the default is >= 0, zero or less where an integer
    default is positive (sizes, counts, steps), an empty list where the default has entries, an
    object with other keys. ``null`` is accepted where the default is ``null`` and for the
    settings in :data:`_NULLABLE` (``lrs_opt.max_lr=null``: no cap); a number where the default
    is a string (``"best"``, ``"auto"``)."""
    def bad(why):
        raise _SettingError(f"{key}={json.dumps(new)}: {why}")

    if old is None:
        return
    if isinstance(new, float) and not math.isfinite(new):
        bad("must be finite")
    if isinstance(old, bool):
        if not isinstance(new, bool):
            bad(f"must be true or false (default {json.dumps(old)})")
    elif isinstance(old, int | float):
        if new is None and key in _NULLABLE:
            return
        if isinstance(new, bool) or not isinstance(new, int | float):
            bad(f"must be a number, not {_kind(new)} (default {json.dumps(old)})")
        if isinstance(old, int) and not isinstance(new, int):
            bad(f"must be an integer (default {old})")
        if old > 0 and isinstance(old, int) and new <= 0:
            bad(f"must be a positive integer (default {old})")
        if old >= 0 and new < 0:
            bad(f"must be >= 0 (default {json.dumps(old)})")
    elif isinstance(old, str):
        if not isinstance(new, str) and (isinstance(new, bool) or not isinstance(new, int | float)):
            bad(f"must be a string or a number, not {_kind(new)} (default {json.dumps(old)})")
        if isinstance(new, int | float) and new < 0:
            bad("must be >= 0")
    elif isinstance(old, list):
        if not isinstance(new, list):
            hint = " (not valid JSON)" if isinstance(new, str) else ""
            bad(f"must be a JSON list{hint}, like the default {json.dumps(old)}")
        if old and not new:
            bad(f"must not be empty (default {json.dumps(old)})")
        for i, item in enumerate(new):
            errors = []
            for ref in old:
                try:
                    _conform(f"{key}.{i}", ref, item)
                    break
                except _SettingError as e:
                    errors.append(str(e))
            else:
                if old:
                    raise _SettingError(errors[0])
    elif isinstance(old, dict):
        if not isinstance(new, dict):
            bad(f"must be a JSON object with the keys {sorted(old)}")
        if old and set(new) != set(old):
            bad(f"must have exactly the keys {sorted(old)}; to change one, use "
                f"--set {key}.<key>=<value>")
        for k in new:
            if k in old:
                _conform(f"{key}.{k}", old[k], new[k])


def _set_path(d: dict, dotted: str, value) -> None:
    """Set the setting at the dotted path ``dotted`` (list items by index) to ``value``, after
    checking that the path exists and that ``value`` fits there (see :func:`_conform`)."""
    keys = dotted.split(".")
    if not dotted or "" in keys:
        raise _SettingError(f"{dotted!r} is not a setting path (KEY or KEY.SUBKEY, e.g. T or "
                            f"online.betas)")
    if keys[0] in ("experiment", "scale"):
        raise _SettingError(f"{keys[0]} is chosen by the command line, not by --set")
    node, path = d, []
    for k in keys:
        where = ".".join(path) or "the settings"
        if isinstance(node, dict):
            if k not in node:
                raise _SettingError(f"unknown setting {dotted!r}: {where} has no {k!r} (it has "
                                    f"{', '.join(sorted(map(str, node)))})")
            parent, index = node, k
        elif isinstance(node, list):
            if not k.isdigit() or int(k) >= len(node):
                raise _SettingError(f"unknown setting {dotted!r}: {where} is a list of "
                                    f"{len(node)}, index {k!r} is not in 0..{len(node) - 1}")
            parent, index = node, int(k)
        else:
            raise _SettingError(f"unknown setting {dotted!r}: {where} is {_kind(node)} "
                                f"({json.dumps(node)}), it has no {k!r}")
        node = parent[index]
        path.append(k)
    _conform(dotted, node, value)
    parent[index] = value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def _auto_or_positive_int(text: str):
    """argparse type: ``auto`` or an integer >= 1."""
    return "auto" if text == "auto" else _positive_int(text)


def _engine(experiment: str, s: dict, device, workers, population) -> dict:
    """How to use the machine (see :mod:`hypergrad.experiments.parallel`): ``workers``
    processes of ``threads`` threads, populations of ``population``; ``"auto"`` values are
    chosen here (population by measuring the experiment's own model)."""
    dev = torch.device(device)
    cores = usable_cores()
    if workers == "auto":
        workers = cores if dev.type == "cpu" else 1
    threads = max(1, cores // workers) if dev.type == "cpu" else torch.get_num_threads()
    engine = {"workers": workers, "threads": threads}
    if population == "auto":
        from hypergrad.experiments.mnist_schedules import MnistTask

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            candidates = (1, 8) if dev.type == "cpu" else (1, 8, 32, 128)
            population, rates = choose_population(MnistTask(s, dev), candidates)
        finally:
            torch.set_num_threads(before)
        engine["population_measured"] = {str(k): v for k, v in rates.items()}
    engine["population"] = population
    return engine


def _device_name(text: str) -> str:
    """argparse type: a device string torch understands (availability is checked later)."""
    try:
        torch.device(text)
    except (RuntimeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda or cuda:N "
                                         f"({e})") from None
    if torch.device(text).type == "meta":
        raise argparse.ArgumentTypeError("the meta device holds no data: use cpu or cuda")
    return text


def _check_out(p: argparse.ArgumentParser, out: Path) -> None:
    """A usage error unless ``out`` can be created and written."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        p.error(f"argument --out: cannot write into {out} ({e.strerror or e})")


def _compact_main(argv: list[str]) -> int:
    """``compact-units <dir>``: :func:`~hypergrad.experiments.store.compact_units`, with what
    it did on one line."""
    p = argparse.ArgumentParser(
        prog="python -m hypergrad.experiments compact-units",
        description="Rewrite the finished unit files units/<name>.json under DIR as "
                    "units/<name>.json.gz (gzip-compressed compact JSON, the same content); "
                    "LRS-OPT progress, checkpoint tags and other files are left as they are. "
                    "Safe to interrupt and to run again.")
    p.add_argument("dir", type=Path, help="a results folder (searched recursively)")
    a = p.parse_args(argv)
    if not a.dir.is_dir():
        p.error(f"argument dir: {a.dir} is not a folder")
    try:
        done = compact_units(a.dir)
    except OSError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    before, after = done["bytes_before"], done["bytes_after"]
    ratio = f" ({before / after:.1f}x smaller)" if after else ""
    print(f"compact-units {a.dir}: {done['converted']} unit files converted, "
          f"{before:,} -> {after:,} bytes{ratio}; {done['skipped']} files that hold no unit "
          f"left as they are")
    for path in done["conflicts"]:
        print(f"  left {path}: its .json.gz holds other content (the .json.gz is the one read)",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line (``python -m hypergrad.experiments -h``). Every argument is checked
    before anything runs: a bad one is a usage error (exit status 2) naming it; an error of the
    data or the files during the run is one line on stderr (exit status 1). ``compact-units
    <dir>`` as the first argument converts unit files instead
    (:func:`~hypergrad.experiments.store.compact_units`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compact-units"]:
        return _compact_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="python -m hypergrad.experiments",
        description="Run a Part II experiment at any scale and save it as JSON (resumable). "
                    "'compact-units DIR' converts the unit files under DIR to .json.gz.")
    p.add_argument("experiment", choices=EXPERIMENTS)
    p.add_argument("--scale", choices=SCALES, default="quick")
    p.add_argument("--out", default="results",
                   help="results root; the run goes to <out>/<experiment>/<scale>/")
    p.add_argument("--device", default=None, type=_device_name,
                   help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="number of seeds (online runs / training runs / grid runs)")
    p.add_argument("--lrs-opt-seeds", type=_positive_int, default=None,
                   help="mnist-schedules: number of LRS-OPT seeds")
    p.add_argument("--lrs-opt-iterations", type=_positive_int, default=None,
                   help="mnist-schedules: LRS-OPT iterations")
    p.add_argument("--tasks", default=None, help="real-world: comma-separated task names")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a setting, e.g. --set T=100 --set online.betas=[1e-3]")
    p.add_argument("--print-settings", action="store_true", help="print the settings and exit")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--population", type=_auto_or_positive_int, default="auto",
                   help="mnist-schedules, sensitivity: run the online units that allow it N at "
                        "a time as one batched (vmap) computation, in groups fixed by the plan; "
                        "1 runs them one at a time; auto (default) measures which of 1 and 8 "
                        "(and 32, 128 on a GPU) is fastest on this model on the first start, "
                        "and reuses the population recorded in the results folder "
                        "(sweep.json) on every resume. A batched unit rounds differently from "
                        "one run alone, so a resume with another N is refused")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="mnist-schedules, mnist-protocol, sensitivity: where the long units "
                        "run: local worker processes (default), or Ray tasks, one per pending "
                        "group, one CPU (or --gpus-per-task GPUs) each; needs "
                        "pip install marthe-hypergrad[ray]")
    p.add_argument("--address", default=None,
                   help="--executor ray: the Ray cluster to join (auto: the one 'ray start' "
                        "runs here; default: start a local Ray instance for this run)")
    p.add_argument("--gpus-per-task", type=float, default=1.0,
                   help="--executor ray on CUDA: GPUs each task asks for (a fraction packs "
                        "several tasks on one GPU; default 1)")
    p.add_argument("--workers", type=_auto_or_positive_int, default="auto",
                   help="mnist-schedules, sensitivity: worker processes for the long units; "
                        "auto (default): one single-thread worker per CPU core, or one on a GPU")
    a = p.parse_args(argv)

    s = settings(a.experiment, a.scale)
    for flag, value in (("--lrs-opt-seeds", a.lrs_opt_seeds),
                        ("--lrs-opt-iterations", a.lrs_opt_iterations)):
        if value is not None and a.experiment != "mnist-schedules":
            p.error(f"argument {flag}: applies to mnist-schedules only, not {a.experiment}")
    for flag, value in (("--population", a.population), ("--workers", a.workers)):
        if value not in ("auto", 1) and a.experiment not in PARALLEL:
            p.error(f"argument {flag}: applies to {' and '.join(PARALLEL)} only, not "
                    f"{a.experiment}")
    if a.executor == "ray":
        if a.experiment not in PARALLEL:
            p.error(f"argument --executor: ray applies to {', '.join(PARALLEL)} only, not "
                    f"{a.experiment}")
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            from hypergrad.experiments.parallel import RAY_MISSING

            p.error(f"argument --executor: {RAY_MISSING}")
    elif a.address is not None:
        p.error("argument --address: applies to --executor ray only")
    g = a.gpus_per_task
    if not (math.isfinite(g) and g > 0 and (g <= 1 or float(g).is_integer())):
        p.error(f"argument --gpus-per-task: a fraction in (0, 1] or a whole number, got {g}")
    if a.tasks is not None and a.experiment != "real-world":
        p.error(f"argument --tasks: applies to real-world only, not {a.experiment}")
    if a.seeds is not None:
        if a.experiment == "mnist-schedules":
            s["online"]["seeds"] = list(range(a.seeds))
        else:
            s["seeds"] = list(range(a.seeds))
    if a.lrs_opt_seeds is not None:
        s["lrs_opt"]["seeds"] = list(range(a.lrs_opt_seeds))
    if a.lrs_opt_iterations is not None:
        s["lrs_opt"]["iterations"] = a.lrs_opt_iterations
    if a.tasks is not None:
        names = [n.strip() for n in a.tasks.split(",")]
        known = [t["name"] for t in s["tasks"]]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            p.error(f"argument --tasks: unknown task {', '.join(map(repr, unknown))} at scale "
                    f"{a.scale} (choose from {', '.join(known)})")
        s["tasks"] = [t for t in s["tasks"] if t["name"] in names]
    for item in a.set:
        key, eq, raw = item.partition("=")
        if not eq:
            p.error(f"argument --set: expected KEY=JSON, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        try:
            _set_path(s, key.strip(), value)
        except _SettingError as e:
            p.error(f"argument --set: {e}")
    if a.print_settings:
        print(json.dumps(s, indent=1))
        return 0
    from hypergrad.data import DataError, _check_device
    from hypergrad.runtime import pick_device

    try:
        device = pick_device(_check_device(a.device, "--device"))
    except ValueError as e:
        p.error(f"argument {e}")
    out = result_dir(a.out, a.experiment, a.scale)
    _check_out(p, out)
    population = a.population
    if a.experiment in PARALLEL:            # a resumed sweep keeps its groups
        try:
            recorded = recorded_population(a.experiment, s, out)
        except PopulationMismatch as e:
            p.error(f"argument --population: {e}")
        if recorded is not None:
            if population not in ("auto", recorded):
                p.error(f"argument --population: {out} was started with population "
                        f"{recorded} (recorded in {out / 'sweep.json'}); another population "
                        f"would group its units otherwise (a batched unit rounds differently). "
                        f"Resume with --population {recorded} or auto, or use another --out")
            population = recorded
    # SIGTERM/SIGINT raise Stopped: the workers are stopped and nothing is left half-written
    # (see hypergrad.experiments.parallel); the next run resumes from the stored units
    try:
        with stop_on_signals():
            engine = {}
            if a.experiment in PARALLEL and a.executor == "ray":
                # each task runs torch on one thread: the population is measured so
                one_per_core = usable_cores() if torch.device(device).type == "cpu" else 1
                chosen = _engine(a.experiment, s, device, one_per_core, population)
                engine = {"executor": "ray", "population": chosen["population"]} | {
                    k: v for k, v in chosen.items() if k == "population_measured"}
                engine["parallel"] = run_on_ray(
                    a.experiment, s, out, device, engine["population"], address=a.address,
                    gpus_per_task=a.gpus_per_task, progress=not a.no_progress)
            elif a.experiment in PARALLEL:
                engine = _engine(a.experiment, s, device, a.workers, population)
                if engine["workers"] > 1:
                    engine["parallel"] = run_in_workers(
                        a.experiment, s, out, device, engine["workers"], engine["threads"],
                        engine["population"], progress=not a.no_progress)
            extra = {"population": engine.get("population", 1)} if a.experiment in PARALLEL else {}
            result = run(a.experiment, s, out_dir=out, device=device, progress=not a.no_progress,
                         meta=engine, **extra)
    except Stopped as e:
        print(f"{p.prog}: {e}: the units stored so far are kept, the run resumes from them "
              f"when started again", file=sys.stderr)
        return 128 + e.signum
    except (DataError, OSError, RuntimeError, PopulationMismatch, ImportError) as e:
        # missing or corrupt data, unwritable files, a failed worker or task: no traceback
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    u = result.get("units", {})
    if engine.get("parallel"):          # the units the workers computed were loaded here
        n = engine["parallel"]["units"]
        u["computed"], u["loaded"] = u.get("computed", 0) + n, u.get("loaded", 0) - n
        atomic_write_json(out / "results.json", _jsonable(result))
    print(f"{a.experiment} ({a.scale}) on {device}: {u.get('computed', 0)} units computed, "
          f"{u.get('loaded', 0)} loaded, {result['meta']['wall_time_s']:.1f} s -> "
          f"{out / 'results.json'}")
    return 0
