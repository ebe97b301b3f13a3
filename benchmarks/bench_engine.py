"""How to use a machine's cores for the paper-scale sweeps: one process using every core, or
one single-thread worker process per core (``python -m hypergrad.experiments --workers``); and
a population of runs against one run at a time inside a single-thread worker.

The task is the experiments' own (``MnistTask`` at paper scale: MLP 784-500-500-500-10,
batch 100, ``E`` the loss on all 700 validation images), MARTHE with μ = 0.9 (the Hessian–
vector product path, the cost of every method but HD). Every time comes from this one run;
the ratios are what to read. The projection multiplies the measured cost of a step by the
number of steps of Section 5's online sweep and of Appendix C's grid (no κ re-runs).

    python -m benchmarks.bench_engine [--steps 10] [--population 8] [--json-out FILE]
"""

from __future__ import annotations

import json
import time

import torch

from benchmarks.common import concurrent_processes, parse
from hypergrad.experiments import mnist_schedules, sensitivity, settings
from hypergrad.experiments.parallel import usable_cores
from hypergrad.io import atomic_write_json, run_metadata


def _task():
    return mnist_schedules.MnistTask(settings("sensitivity", "paper"), "cpu")


def _serial(task, steps: int) -> float:
    batches = task.batches(0)[:steps]
    params = task.init_params(0)
    task.online(params, batches[:1], 0.01, 1e-4, 0.9)            # warm-up
    t0 = time.perf_counter()
    task.online(params, batches, 0.01, 1e-4, 0.9)
    return time.perf_counter() - t0


def _worker(steps, ready, go, out):
    torch.set_num_threads(1)
    task = _task()
    _serial(task, 1)
    ready.set()
    go.wait()
    out.put(_serial(task, steps))


def workers_wall(k: int, steps: int) -> float:
    """Wall time of ``k`` single-thread processes each running ``steps`` steps at once."""
    return concurrent_processes(_worker, [(steps,)] * k)


def main():
    a = parse(__doc__.splitlines()[0], steps=10, population=8, json_out="")
    cores = usable_cores()
    task = _task()
    torch.set_num_threads(cores)
    one_proc = _serial(task, a.steps) / a.steps                       # s per step, all cores
    k_wall = workers_wall(cores, a.steps)
    k_step = k_wall / (cores * a.steps)                               # s per step per machine
    torch.set_num_threads(1)
    single = _serial(task, a.steps) / a.steps
    params, batches = task.init_params(0), task.batches(0)[:a.steps]
    task.online_many([(params, batches[:1], 0.01, 1e-4, 0.9)] * a.population)
    t0 = time.perf_counter()
    task.online_many([(params, batches, 0.01, 1e-4, 0.9)] * a.population)
    pop = (time.perf_counter() - t0) / (a.steps * a.population)
    s5, sc = settings("mnist-schedules", "paper"), settings("sensitivity", "paper")
    steps5 = len(mnist_schedules.online_units(s5)) * s5["T"]
    steps_c = len(sensitivity.plan_units(sc)) * sc["T"]
    res = {
        "meta": run_metadata(), "cores": cores, "steps": a.steps,
        "s_per_step": {"one_process_all_cores": one_proc, "workers_effective": k_step,
                       "one_thread": single, f"population{a.population}_one_thread": pop},
        "ratio_workers_over_one_process": k_step / one_proc,
        "ratio_population_over_one_run_one_thread": pop / single,
        "projection_h": {
            "section5_online_one_process": steps5 * one_proc / 3600,
            "section5_online_workers": steps5 * k_step / 3600,
            "appendix_c_one_process": steps_c * one_proc / 3600,
            "appendix_c_workers": steps_c * k_step / 3600},
    }
    print(f"paper MLP, E on 700 images, MARTHE mu=0.9, {a.steps} steps, {cores} cores:")
    print(f"  one process x {cores} threads: {one_proc * 1e3:.1f} ms/step")
    print(f"  {cores} processes x 1 thread:  {k_step * 1e3:.1f} ms/step of the machine "
          f"(ratio {k_step / one_proc:.2f})")
    print(f"  1 thread, one run {single * 1e3:.1f} ms/step; population of {a.population} "
          f"{pop * 1e3:.1f} ms/member-step (ratio {pop / single:.2f})")
    for k, v in res["projection_h"].items():
        print(f"  projected {k}: {v:.2f} h")
    if a.json_out:
        atomic_write_json(a.json_out, res)
    return json.dumps(res)


if __name__ == "__main__":
    main()
