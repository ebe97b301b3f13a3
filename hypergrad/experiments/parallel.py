"""Running an experiment's long units in worker processes, and choosing the engine by measurement.

The paper's sweeps are embarrassingly parallel, and two ways of using a machine's cores compete:
several single-thread worker processes, each computing whole units, or one process whose
kernels use every core; and within a process, one run at a time or a *population* of runs as
one batched computation (:func:`hypergrad.population.run_population`). On the CPUs measured
(``benchmarks/bench_population.py``) single-thread workers win at every model size of Part II
(the MLP 784-500-500-500-10: 28 ms per MARTHE step in each of two single-thread workers at
once, 20.6 ms in one two-thread process); a population wins at quick scale and loses at paper
scale. So the command line's defaults are: on a CPU, one single-thread worker per core; on a
GPU, one worker; and in each worker the population size that :func:`choose_population`
measures to be fastest on the experiment's own model. Whatever is chosen, each unit is
computed by the same code, and the results agree to rounding (a population's batched kernels
round differently from one run's).
"""

from __future__ import annotations

import contextlib
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
    remove_stale_temporary_files,
)

__all__ = ["PARALLEL", "usable_cores", "pending_units", "choose_population", "run_in_workers",
           "Stopped", "stop_on_signals"]

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
    no one set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = []

    def stop(signum, frame):
        if not stopping:
            stopping.append(signum)
            raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in signums}
    try:
        yield
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
    """Units grouped into jobs: batchable units ``population`` at a time, others alone."""
    jobs, batch = [], []
    for u in units:
        if u.batch is not None and population > 1:
            batch.append(u)
            if len(batch) == population:
                jobs.append(batch)
                batch = []
        else:
            jobs.append([u])
    return jobs + ([batch] if batch else [])


def _compute_job(mod, task, s: dict, store: UnitStore, job: list[Unit], population: int) -> None:
    if len(job) > 1:
        compute_batched(task, job, store, population, lambda u, r: mod.finish_unit(s, u, r))
        return
    (u,) = job
    if u.compute[0] == "lrs_opt":                 # stores itself, resuming within the unit
        mod.compute_unit(task, s, u, store)
    else:
        store.get(u.name, u.settings, lambda: mod.compute_unit(task, s, u))


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
            _compute_job(mod, task, s, store, job, population)
            done.put(("ok", [u.name for u in job], None))
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


def run_in_workers(experiment: str, s: dict, out_dir, device="cpu", workers: int = 2,
                   threads: int = 1, population: int = 1, progress: bool = True) -> dict:
    """Compute the pending long units of ``experiment`` in ``workers`` processes of
    ``threads`` threads each (``spawn``), storing each under ``out_dir`` as it finishes;
    the jobs are handed out one at a time, in the plan's order.
    Interrupting loses only the units in progress (an LRS-OPT unit keeps its iterations):
    ``SIGTERM`` or ``SIGINT`` to this process raises :class:`Stopped` here once every worker
    has stopped (each abandons its unit, writing nothing half; see ``_stop_workers``), and
    the next call computes only the units not stored. Temporary files that a killed writer
    left in ``units/`` are removed first (:func:`~hypergrad.experiments.store.remove_stale_temporary_files`).
    Returns ``{"units", "workers", "threads", "population", "wall_time_s"}``; raises
    ``RuntimeError`` naming the units that failed."""
    import multiprocessing as mp

    s = _jsonable(s)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(out_dir)
    units = pending_units(experiment, s, out_dir)
    start = time.perf_counter()
    info = {"units": len(units), "workers": workers, "threads": threads, "population": population}
    if not units:
        return info | {"wall_time_s": 0.0}
    jobs = _jobs(units, population)
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
    errors, exited = [], 0
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
                        bar.update(len(names))
                    else:
                        errors.append(f"{', '.join(names) or 'worker start'}: {why}")
                        if not names:
                            exited += 1
        finally:
            _stop_workers(procs)
            queue.cancel_join_thread()      # jobs left in the pipe must not hold up the exit
            queue.close()
    if errors:
        raise RuntimeError("units failed in the workers:\n  " + "\n  ".join(errors))
    missing = pending_units(experiment, s, out_dir)
    if missing:
        raise RuntimeError(f"{len(missing)} unit(s) were not stored by the workers (a worker "
                           f"died?), e.g. {missing[0].name}")
    print(f"{experiment}: {len(units)} units in {n} worker(s) x {threads} thread(s), "
          f"population {population}, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return info | {"wall_time_s": time.perf_counter() - start}
