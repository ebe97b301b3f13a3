"""The memory a step of each method of chapter 12 takes, on the task of ``--experiment``.

Two numbers per method:

* the optimizer's state: the bytes of every tensor in ``optimizer.state`` (and DoG's
  weight average), as a multiple of the parameters' bytes — exact, the same on any machine;
* the peak memory of training: on CUDA, ``torch.cuda.max_memory_allocated`` over ``--steps``
  steps less the memory held before them; on a CPU, the growth of the process's peak
  resident set (``ru_maxrss``) over the steps, the first included, each method in a fresh process so that no
  method inherits another's high-water mark (an allocator's caching makes this coarser).

    python -m benchmarks.bench_lr_free_memory [--experiment lr-free] [--device cpu]
                                              [--steps 20] [--out FILE]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch

from benchmarks.common import header, parse
from hypergrad import experiments as ex
from hypergrad.dynamics import DivergenceError
from hypergrad.experiments import lr_free


def _tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _rss_mib() -> float:
    """The process's peak resident set so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(experiment: str, method: str, device: str, steps: int) -> dict:
    """Measure ``method`` in this process (called in a fresh one per method)."""
    torch.set_num_threads(1)
    s = ex.settings(experiment, "paper")
    task = lr_free.LrFreeTask(dict(s, T=steps + 1), device)
    grid = s["grids"].get(method)
    value = grid[len(grid) // 2] if grid else None
    net, opt, sched, averager, vb, _ = lr_free._setup(task, method, value, 0)
    batches = task.batches(0)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_mib()
    diverged = False
    for t, (x, y) in enumerate(batches):
        vb["i"] = t
        try:
            lr_free.one_step(method, opt, net, x, y, t, sched, averager)
        except DivergenceError:
            diverged = True
            break
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = _rss_mib() - before
    params = sum(_tensor_bytes(p.data) for p in net.parameters())
    state = _tensor_bytes(list(opt.state.values()))
    if averager is not None:
        state += sum(_tensor_bytes(p.data) for p in averager.averaged_model.parameters())
    return {"state_over_params": state / params, "param_mib": params / 2**20,
            "peak_growth_mib": peak, "diverged": diverged}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _, _, experiment, method, device, steps = sys.argv
        print(json.dumps(one(experiment, method, device, int(steps))))
        return
    args = parse(__doc__.splitlines()[0], steps=20, out="", experiment="lr-free")
    header(f"chapter 12's optimizers: memory of {args.steps} steps, {args.experiment}",
           args.device)
    errors = lr_free.package_errors()
    out = {}
    for m in lr_free.METHODS:
        if errors.get(m):
            continue
        got = subprocess.run([sys.executable, "-m", "benchmarks.bench_lr_free_memory", "--one",
                              args.experiment, m, args.device, str(args.steps)],
                             capture_output=True, text=True, check=True)
        out[m] = json.loads(got.stdout.strip().splitlines()[-1])
        r = out[m]
        print(f"{m:16s} state {r['state_over_params']:5.2f} x params   peak growth "
              f"{r['peak_growth_mib']:7.1f} MiB" + ("   (diverged)" if r["diverged"] else ""))
    if args.out:
        from hypergrad.io import atomic_write_json, run_metadata

        atomic_write_json(args.out, {
            "meta": run_metadata(), "device": args.device, "steps": args.steps,
            "experiment": args.experiment,
            "measure": ("cuda max_memory_allocated" if args.device.startswith("cuda")
                        else "growth of the peak resident set (ru_maxrss), one process each"),
            "methods": out, "errors": {k: v for k, v in errors.items() if v}})


if __name__ == "__main__":
    main()
