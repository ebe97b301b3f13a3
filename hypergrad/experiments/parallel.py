"""Running an experiment's long units in worker processes or as Ray tasks, in groups fixed by the plan, and choosing the engine by measurement.

The paper's sweeps are embarrassingly parallel, and two ways of using a machine's cores compete:
several single-thread worker processes, each computing whole units, or one process whose
kernels use every core; and within a process, one run at a time or a *population* of runs as
one batched computation (:func:`hypergrad.population.run_population`). On the CPUs measured
(``benchmarks/bench_population.py``) single-thread workers win at every model size of Part II
(the MLP 784-500-500-500-10: 28 ms per MARTHE step in each of two single-thread workers at
once, 20.6 ms in one two-thread process); a population wins at quick scale and loses at paper
scale. So the command line's defaults are: on a CPU, one single-thread worker per core; on a
GPU, one worker; and in each worker the population size that :func:`choose_population`
measures to be fastest on the experiment's own model.

A population's batched kernels round differently from one run's, and in the chaotic regimes
of the sweeps rounding decides outcomes, so the grouping is part of the plan: the groups are
:func:`~hypergrad.experiments.store.plan_groups` of the experiment's whole plan and the
population size (the batchable units in the plan's order, N at a time), whatever is pending,
whichever worker or executor computes them; a group with a member missing is computed whole
(only the missing members are stored); each unit's meta records its group; and the population
size of a results folder is recorded on its first start (``sweep.json``,
:func:`check_population`) and kept on every resume. A unit is then the same computation each
time: :func:`recompute_unit` repeats it bit for bit on the same build (:func:`same_build`).

Ray (:func:`run_on_ray`, ``--executor ray``) computes the same groups as Ray core tasks, on
one machine or a cluster. Each pending group of the plan (:func:`pending_jobs`: one unit, or the units
batched as one population) is one Ray core task (``@ray.remote``) asking for one
CPU (its torch uses one thread) or, on CUDA, a whole or fractional GPU. The task computes its
group by the code a local worker runs and writes each finished unit through the same
:class:`~hypergrad.experiments.store.UnitStore`, atomically, into the results folder the driver
names, so the folder must be on storage that every node sees (a shared file system). A task
whose worker dies (killed, out of memory, a node lost) is run again by Ray, up to
``max_retries`` times; until then it has written whole unit files or none, and a group that
never finishes is left pending for the next start. A sweep started with one executor resumes
with the other, and nothing stored is computed again.

Ray is an optional dependency (``pip install marthe-hypergrad[ray]``), imported only here and
only when a Ray sweep runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue as queue_module
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from hypergrad.experiments import mnist_schedules, protocol, sensitivity
from hypergrad.experiments.store import (
    Unit,
    UnitStore,
    _bar,
    _jsonable,
    compute_batched,
    cpu_model,
    plan_groups,
    read_unit_file,
    remove_stale_temporary_files,
    unit_file,
    unit_group,
)
from hypergrad.io import atomic_write_json

__all__ = ["PARALLEL", "usable_cores", "pending_units", "choose_population", "run_in_workers",
           "Stopped", "stop_on_signals", "pending_jobs", "SWEEP_FILE", "PopulationMismatch",
           "recorded_population", "check_population", "recompute_unit", "same_build",
           "RAY_MISSING", "import_ray", "run_on_ray"]

#: The experiments whose long units run in workers, by name, each with the module that has
#: its ``plan_units``, ``compute_unit`` and ``finish_unit``.
PARALLEL = {"mnist-schedules": mnist_schedules, "mnist-protocol": protocol,
            "sensitivity": sensitivity}


class Stopped(KeyboardInterrupt):
    """A sweep was stopped by a signal (``SIGTERM``: ``kill``, ``timeout``, a job scheduler;
    ``SIGINT``: Ctrl-C): raised in the driver by :func:`stop_on_signals`'s handlers, so that
    it unwinds (its workers stopped, no file half-written) instead of dying on the spot.
    ``signum`` is the signal; a subclass of :class:`KeyboardInterrupt`, so what stops on
    Ctrl-C stops on this too."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """While inside, the first ``SIGTERM`` or ``SIGINT`` raises :class:`Stopped` in this
    process (the main thread) instead of ending it at once, and the next ones are ignored, so
    that the cleanup that follows (stopping the workers) is not cut short by a second Ctrl-C;
    the previous handlers come back on leaving. Outside the main thread (where Python lets
    no one set handlers) it does nothing. It yields a list that holds the signal once one
    came (for code whose library turns the exception into a plain ``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    stopping = []

    def stop(signum, frame):
        if not stopping:
            stopping.append(signum)
            raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in signums}
    try:
        yield stopping
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def pending_units(experiment: str, s: dict, out_dir) -> list[Unit]:
    """The long units of ``experiment`` (settings ``s``) whose file under ``out_dir`` is missing
    or holds other settings, in the order of the experiment's plan."""
    store = UnitStore(out_dir)
    return [u for u in PARALLEL[experiment].plan_units(s)
            if store.lookup(u.name, u.settings) is None]


def choose_population(task, candidates=(1, 8), steps: int = 3) -> tuple[int, dict]:
    """The population size among ``candidates`` with the most member-steps per second on
    ``task``'s model, measured here: ``steps`` steps of MARTHE (μ = 0.9, the Hessian–vector
    product path) one run at a time (N = 1) and as populations of N (after one warm-up call
    each). Returns ``(N, {N: member-steps per second})``; a size that runs out of memory stops
    the search."""
    batches = task.batches(0)[:steps]
    params = task.init_params(0)
    rate = {}
    for n in candidates:
        def go(k=steps, n=n):
            if n == 1:
                task.online(params, batches[:k], 0.01, 1e-4, 0.9)
            else:
                task.online_many([(params, batches[:k], 0.01, 1e-4, 0.9)] * n)
        try:
            go(1)
            if task.device.type == "cuda":
                torch.cuda.synchronize(task.device)
            start = time.perf_counter()
            go()
            if task.device.type == "cuda":
                torch.cuda.synchronize(task.device)
            rate[n] = n * steps / (time.perf_counter() - start)
        except torch.OutOfMemoryError:
            break
    return max(rate, key=rate.get), rate


def _jobs(units: list[Unit], population: int) -> list[list[Unit]]:
    """The groups of ``units`` taken as a whole plan (:func:`~hypergrad.experiments.store.plan_groups`)."""
    return plan_groups(units, population)


def pending_jobs(experiment: str, s: dict, out_dir, population: int) -> list[list[Unit]]:
    """The groups of the plan of ``experiment`` (:func:`~hypergrad.experiments.store.plan_groups`
    of its whole plan and ``population``) of which a member is not stored under ``out_dir``,
    in the plan's order: what a sweep still has to compute, each group as one job."""
    store = UnitStore(out_dir)
    return [g for g in plan_groups(PARALLEL[experiment].plan_units(_jsonable(s)), population)
            if any(store.lookup(u.name, u.settings) is None for u in g)]


#: the file of a results folder that records the population size its sweep uses
SWEEP_FILE = "sweep.json"


class PopulationMismatch(ValueError):
    """A sweep resumed with another population size than the one its results folder records
    (its groups, hence its units' numbers, would differ from those of the units stored)."""


def recorded_population(experiment: str, s: dict, out_dir) -> int | None:
    """The population size recorded for ``out_dir``: its ``sweep.json``, else the group that a
    stored batchable unit of the plan records (a folder whose ``sweep.json`` was lost), else
    ``None`` (a new folder, or one of unit files that record no group)."""
    path = Path(out_dir) / SWEEP_FILE
    try:
        data = json.loads(path.read_text())
        return int(data["population"])
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise PopulationMismatch(f"{path} cannot be read ({e}): remove it only if the units "
                                 f"under {Path(out_dir) / 'units'} record no group") from None
    for u in PARALLEL[experiment].plan_units(_jsonable(s)):
        if u.batch is None:
            continue
        f = unit_file(out_dir, u.name)
        group = unit_group(read_unit_file(f)) if f is not None else None
        if group is not None:
            return group["population"]
    return None


def check_population(experiment: str, s: dict, out_dir, population: int) -> None:
    """Refuse to compute ``out_dir``'s units with another population size than the one it
    records (:class:`PopulationMismatch`), and record ``population`` (``sweep.json``) when
    none is: the groups of a sweep stay those of its first start. An experiment whose plan
    batches nothing (mnist-protocol) has no groups to keep: nothing is checked or recorded."""
    if all(u.batch is None for u in PARALLEL[experiment].plan_units(_jsonable(s))):
        return
    recorded = recorded_population(experiment, s, out_dir)
    if recorded is None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out_dir) / SWEEP_FILE,
                          {"experiment": experiment, "population": population,
                           "grouping": "the plan's batchable units in its order, "
                                       "population at a time"})
    elif recorded != population:
        raise PopulationMismatch(
            f"{out_dir} was started with population {recorded} ({Path(out_dir) / SWEEP_FILE}); "
            f"population {population} would group its units otherwise: resume with "
            f"--population {recorded} (or auto), or write to another --out")


def same_build(meta: dict) -> bool:
    """Whether this process is the build a unit's ``meta`` records: the same torch, machine,
    CPU model, thread count and GPU (a float32 run's rounding depends on each); ``False`` for
    a unit that does not record its CPU model (written before it was recorded). Only then
    must a recompute equal the unit bit for bit."""
    import platform

    here = {"torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return "cpu" in meta and all(meta.get(k) == v for k, v in here.items())


def recompute_unit(experiment: str, s: dict, unit: Unit, group: dict | None, task) -> dict:
    """Compute ``unit`` of ``experiment`` (settings ``s``) again, as its ``group`` says it was
    computed (:func:`~hypergrad.experiments.store.unit_group` of its file): alone (population 1,
    or ``None``: grouping not recorded) by ``compute_unit``, else with every member of its
    group, in the recorded order, as one population. Returns its stored form (JSON values)."""
    mod = PARALLEL[experiment]
    if group is None or group["population"] == 1:
        result = mod.compute_unit(task, s, unit)
    else:
        plan = {u.name: u for u in mod.plan_units(s)}
        missing = [m for m in group["members"] if m not in plan]
        if missing:
            raise KeyError(f"{unit.name}: group member(s) {missing} are not in the plan")
        members = [plan[m] for m in group["members"]]
        store = UnitStore(None)
        compute_batched(task, members, store, max(group["population"], len(members)),
                        lambda u, r: mod.finish_unit(s, u, r))
        result = store.memory[unit.name][1]
    return json.loads(json.dumps(_jsonable(result)))


def _compute_job(mod, task, s: dict, store: UnitStore, job: list[Unit], population: int,
                 done=None) -> None:
    """Compute one group of the plan (:func:`~hypergrad.experiments.store.plan_groups`) and store
    its members not stored: the same code for every executor."""
    if job[0].batch is not None and population > 1:
        compute_batched(task, job, store, population, lambda u, r: mod.finish_unit(s, u, r),
                        done)
        return
    (u,) = job
    if u.compute[0] == "lrs_opt":                 # stores itself, resuming within the unit
        mod.compute_unit(task, s, u, store)
    else:
        store.get(u.name, u.settings, lambda: mod.compute_unit(task, s, u))
    if done is not None:
        done([u.name])


def _stop_with_the_parent(parent: int, every: float = 1.0) -> None:
    """A worker's watchdog thread: once the driver ``parent`` is gone (killed with
    ``SIGKILL``, say, so that it could not stop its workers), ``SIGTERM`` this worker."""
    while os.getppid() == parent:
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker(experiment, s, out_dir, device, population, threads, jobs, done, parent=None):
    # SIGTERM (from the driver stopping, or the watchdog) raises SystemExit where the worker
    # is: the unit in progress is abandoned, and a file being written is removed by
    # hypergrad.io.atomic_write (never renamed into place half-written); "except Exception"
    # below does not catch it. SIGINT (Ctrl-C reaches the whole process group) is the
    # driver's to handle: it stops the workers with SIGTERM.
    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # once: a second one must not cut
        done.cancel_join_thread()       # the cleanup short; exit even if no one reads `done`
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        threading.Thread(target=_stop_with_the_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    mod = PARALLEL[experiment]
    try:
        task = mnist_schedules.MnistTask(s, device)
    except Exception as e:  # noqa: BLE001 (reported to the parent, which raises)
        done.put(("error", [], f"{type(e).__name__}: {e}"))
        return
    store = UnitStore(out_dir)
    while (job := jobs.get()) is not None:
        try:
            stored = []
            _compute_job(mod, task, s, store, job, population, stored.extend)
            done.put(("ok", stored, None))
        except Exception as e:  # noqa: BLE001 (reported to the parent, which raises)
            done.put(("error", [u.name for u in job], f"{type(e).__name__}: {e}"))
    done.put(("exit", [], None))


def _stop_workers(procs, grace: float = 10.0) -> None:
    """Stop the live workers: ``SIGTERM`` (each abandons its unit and exits), then, for one
    still alive after ``grace`` seconds, ``SIGKILL``; every worker is joined (no zombie, no
    orphan left computing)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        if p.pid is None:                   # never started
            continue
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _failed(errors: list[str]) -> RuntimeError:
    """The error a sweep raises at its end: each unit (or group) that failed, and why."""
    return RuntimeError("units failed in the workers:\n  " + "\n  ".join(errors))


def _postfix(bar, names, ok: bool = True) -> None:
    """The bar's per-unit status: the last unit finished (or failed)."""
    if names:
        more = f" +{len(names) - 1}" if len(names) > 1 else ""
        bar.set_postfix_str(f"{'done' if ok else 'FAILED'}: {names[-1]}{more}", refresh=False)


def _check_stored(errors: list[str], experiment: str, s: dict, out_dir, who: str) -> None:
    """Raise for the units that failed (named, with why), then for any unit of the plan that
    ``who`` left unstored."""
    if errors:
        raise _failed(errors)
    missing = pending_units(experiment, s, out_dir)
    if missing:
        raise RuntimeError(f"{len(missing)} unit(s) were not stored by {who}, e.g. "
                           f"{missing[0].name}")


def run_in_workers(experiment: str, s: dict, out_dir, device="cpu", workers: int = 2,
                   threads: int = 1, population: int = 1, progress: bool = True) -> dict:
    """Compute the pending long units of ``experiment`` in ``workers`` processes of
    ``threads`` threads each (``spawn``), storing each under ``out_dir`` as it finishes;
    the jobs, the groups of the plan with a member missing (:func:`pending_jobs`), are handed
    out one at a time, in the plan's order. ``population`` must be the one ``out_dir``
    records, if any (:func:`check_population`, which records it otherwise).
    Interrupting loses only the units in progress (an LRS-OPT unit keeps its iterations):
    ``SIGTERM`` or ``SIGINT`` to this process raises :class:`Stopped` here once every worker
    has stopped (each abandons its unit, writing nothing half; see ``_stop_workers``), and
    the next call computes only the units not stored. Temporary files that a killed writer
    left in ``units/`` are removed first (:func:`~hypergrad.experiments.store.remove_stale_temporary_files`).
    One progress bar counts the units stored, its postfix naming the last one finished or
    failed. Returns ``{"units", "workers", "threads", "population", "wall_time_s"}``
    (``units``: how many were stored); raises ``RuntimeError`` naming the units that failed
    and why."""
    import multiprocessing as mp

    s = _jsonable(s)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(out_dir)
    check_population(experiment, s, out_dir, population)
    units = pending_units(experiment, s, out_dir)
    start = time.perf_counter()
    info = {"units": 0, "workers": workers, "threads": threads, "population": population}
    if not units:
        return info | {"wall_time_s": 0.0}
    jobs = pending_jobs(experiment, s, out_dir, population)
    ctx = mp.get_context("spawn")
    queue, done = ctx.Queue(), ctx.Queue()
    for job in jobs:
        queue.put(job)
    n = min(workers, len(jobs))
    for _ in range(n):
        queue.put(None)
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(experiment, s, str(out_dir), str(device), population, threads,
                               queue, done, os.getpid())) for _ in range(n)]
    errors, exited, stored = [], 0, 0
    with stop_on_signals():
        try:
            for p in procs:
                p.start()
            with _bar(len(units), f"{experiment} units ({n} workers)", progress) as bar:
                while exited < n:
                    try:
                        kind, names, why = done.get(timeout=2.0)
                    except queue_module.Empty:
                        if not any(p.is_alive() for p in procs):
                            break                       # a worker died without a word
                        continue
                    if kind == "exit":
                        exited += 1
                    elif kind == "ok":
                        stored += len(names)
                        _postfix(bar, names)
                        bar.update(len(names))
                    else:
                        errors.append(f"{', '.join(names) or 'worker start'}: {why}")
                        _postfix(bar, names, ok=False)
                        if not names:
                            exited += 1
        finally:
            _stop_workers(procs)
            queue.cancel_join_thread()      # jobs left in the pipe must not hold up the exit
            queue.close()
    _check_stored(errors, experiment, s, out_dir, "the workers (a worker died?)")
    print(f"{experiment}: {stored} units in {n} worker(s) x {threads} thread(s), "
          f"population {population}, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return info | {"units": stored, "wall_time_s": time.perf_counter() - start}


# =========================================================================== Ray
#: what to do when Ray is not installed
RAY_MISSING = ("--executor ray needs Ray, an optional dependency: "
               "pip install marthe-hypergrad[ray] (or pip install 'ray>=2.40')")


def import_ray():
    """The ``ray`` module, or ``ImportError`` saying how to install it (:data:`RAY_MISSING`)."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(RAY_MISSING) from e
    return ray


#: a Ray worker's task, kept between the tasks of one sweep (the data loaded once per worker)
_TASK: dict = {}

#: tests only: in the folder this environment variable names, a file ``kill-once`` makes the
#: first task that takes it kill its own worker process (``SIGKILL``) once its group is
#: computed, before it stores anything; a file ``raise-once`` makes it raise instead
_FAULT_DIR = "HYPERGRAD_FAULT_DIR"


def _task_for(s: dict, device: str):
    key = (json.dumps(s, sort_keys=True), device)
    if _TASK.get("key") != key:
        _TASK.clear()
        _TASK.update(key=key, task=mnist_schedules.MnistTask(s, device))
    return _TASK["task"]


class _KillBeforeStoring(UnitStore):
    """A store whose first write kills the process instead (the hostile test of retries)."""

    def put(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)


def _run_group(experiment: str, s: dict, out_dir: str, device: str, population: int,
               threads: int, job: list) -> list[str]:
    """The body of a Ray task: compute one group of the plan as a local worker does
    (``_compute_job``) and store its missing members under ``out_dir``; returns their names."""
    torch.set_num_threads(threads)
    store_class = UnitStore
    fault = os.environ.get(_FAULT_DIR)
    if fault:
        try:                                    # claimed by one task only (rename is atomic)
            os.rename(Path(fault) / "kill-once", Path(fault) / "killed")
            store_class = _KillBeforeStoring
        except OSError:
            pass
        try:
            os.rename(Path(fault) / "raise-once", Path(fault) / "raised")
        except OSError:
            pass
        else:
            raise RuntimeError("a failure planted by the tests")
    stored: list[str] = []
    _compute_job(PARALLEL[experiment], _task_for(s, device), s, store_class(out_dir), job,
                 population, stored.extend)
    return stored


def run_on_ray(experiment: str, s: dict, out_dir, device="cpu", population: int = 1,
               address: str | None = None, gpus_per_task: float = 1.0, max_retries: int = 3,
               progress: bool = True, init_kwargs: dict | None = None) -> dict:
    """Compute the pending long units of ``experiment`` (settings ``s``) as Ray tasks, one per
    pending group of the plan, storing them under ``out_dir`` (which every Ray node must see).

    ``address``: the Ray cluster to join (``"auto"``: the one ``ray start`` runs on this node;
    ``None``: a running instance this process already joined, else a local one started here
    and shut down at the end). Each task asks for one CPU and runs torch on one thread, or on
    a CUDA ``device`` for ``gpus_per_task`` GPUs (a fraction packs several tasks on a GPU).
    ``population`` must be the one ``out_dir`` records, if any
    (:func:`check_population`). A task whose worker dies is
    retried ``max_retries`` times; an exception in a task is not retried (it would fail again)
    and is reported. ``SIGTERM`` or ``SIGINT`` cancels every task (``ray.cancel(force=True)``),
    shuts down a Ray instance started here and raises
    :class:`Stopped`; what was stored stays, and the next start,
    with either executor, computes the rest.

    One progress bar counts the units stored, its postfix naming the last one finished or
    failed. Returns ``{"units", "tasks", "population", "executor", "address", "wall_time_s"}``;
    raises ``RuntimeError`` naming the units that failed and why, as the local executor does."""
    ray = import_ray()
    s = _jsonable(s)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out_dir = str(Path(out_dir).resolve())
    remove_stale_temporary_files(out_dir)
    check_population(experiment, s, out_dir, population)
    units = pending_units(experiment, s, out_dir)
    info = {"units": 0, "tasks": 0, "population": population, "executor": "ray",
            "address": address}
    if not units:
        return info | {"wall_time_s": 0.0}
    jobs = pending_jobs(experiment, s, out_dir, population)
    start = time.perf_counter()
    cuda = str(device).startswith("cuda")
    started = False
    errors: list[str] = []
    stored = 0
    try:
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False,
                      "configure_logging": False} | (init_kwargs or {})
            ray.init(address=address, **kwargs)
            started = True
        # after ray.init, which installs its own SIGTERM handler (one that aborts)
        with stop_on_signals() as stopping:
            refs: dict = {}
            try:
                remote = ray.remote(_run_group).options(
                    num_cpus=1, num_gpus=gpus_per_task if cuda else 0,
                    max_retries=max_retries, retry_exceptions=False,
                    name=f"{experiment} group")
                for job in jobs:
                    refs[remote.remote(experiment, s, out_dir, str(device), population, 1,
                                       job)] = job
                info["tasks"] = len(refs)
                with _bar(len(units), f"{experiment} units (ray)", progress) as bar:
                    while refs:
                        ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                        for ref in ready:
                            job = refs.pop(ref)
                            try:
                                names = ray.get(ref)
                            except Exception as e:  # noqa: BLE001 (a task's error, reported)
                                why = getattr(e, "cause", None) or e
                                text = str(why).strip().splitlines()
                                errors.append(f"{', '.join(u.name for u in job)}: "
                                              f"{type(why).__name__}: "
                                              f"{text[-1] if text else ''}")
                                _postfix(bar, [u.name for u in job], ok=False)
                                continue
                            stored += len(names)
                            _postfix(bar, names)
                            bar.update(len(names))
            except KeyboardInterrupt as e:
                if stopping and not isinstance(e, Stopped):  # Ray's wait re-raised it plainly
                    raise Stopped(stopping[0]) from None
                raise
            finally:
                for ref in refs:                    # stopped: nothing left running
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:  # noqa: BLE001, S110 (already finished or gone)
                        pass
    finally:
        if started:
            ray.shutdown()
    _check_stored(errors, experiment, s, out_dir, "the Ray tasks")
    wall = time.perf_counter() - start
    print(f"{experiment}: {stored} units in {info['tasks']} Ray task(s), population "
          f"{population}, {wall:.1f} s", file=sys.stderr)
    return info | {"units": stored, "wall_time_s": wall}
