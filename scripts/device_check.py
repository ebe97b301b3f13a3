"""One run that answers what a GPU session needs to know, written to ONE JSON file.

    python scripts/device_check.py [--device cuda] [--out benchmarks/results/] [--tiny]

Steps (each timed, each failure recorded and the run carried on):

1. ``tests``: the device-relevant tests (``pytest -k "cuda or device"``) — skipped with
   ``--tiny`` (CI runs the suite anyway).
2. ``benchmarks``: ``benchmarks.bench_online`` (the default Hessian-vector product against
   forward-over-reverse, so that the default can be chosen per device from a measurement) and
   ``benchmarks.bench_hypergradient`` on ``--device``; their ``RATIO`` and timing lines.
3. ``population``: steps per second of ``N = 1, 8, 64`` online runs as one population, when
   the library has a population module (``hypergrad.population``); else recorded as absent.
4. ``paper_slice``: the paper's MLP 784-500-500-500-10, batch 100, the 7000/700 MNIST split:
   per-step cost of plain SGD and of each Section 5 online method (a few dozen steps), and one
   LRS-OPT hypergradient (``T = 500``; ``--lrs-T`` measures a shorter one and scales it
   linearly, the cost being linear in ``T``). From these: projected serial wall times of
   Section 5 (20 seeds × 7 β × 7 methods × 500 steps, and 4 LRS-OPT seeds × 5000 PGD
   iterations, or × 500 with a 10× faster outer optimiser) and of Appendix C (5 seeds × 7 β ×
   8 μ × 500 steps).
5. ``peak_memory_mib``: peak GPU memory (``cuda``) or peak resident memory of this process.

``--tiny`` (CI, CPU, < 60 s): a small MLP, few steps, short benchmarks — it checks that the
script still runs, not the numbers. Without ``$HYPERGRAD_DATA`` random images stand in for MNIST.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import hypergrad as hg  # noqa: E402
from hypergrad.io import atomic_write_json, run_metadata  # noqa: E402

#: Section 5 and Appendix C, as the paper runs them
SECTION5 = {"seeds": 20, "betas": 7, "steps": 500, "lrs_opt_seeds": 4,
            "lrs_opt_iterations": 5000, "lrs_opt_T": 500}
APPENDIX_C = {"seeds": 5, "betas": 7, "mus": 8, "steps": 500}
#: Section 5's seven online methods: name -> (μ, κ)
METHODS = {"hd": (0.0, None), "rtho": (1.0, None), "marthe-mu0.5": (0.5, None),
           "marthe-mu0.9": (0.9, None), "marthe-mu0.99": (0.99, None),
           "marthe-auto-mu": ("auto", None), "marthe": ("auto", 1e-1)}


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _subprocess(cmd, timeout, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           **(env_extra or {})}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    return {"cmd": " ".join(cmd), "rc": rc, "wall_s": round(time.perf_counter() - t0, 2),
            "tail": out[-3000:]}


def step_tests(args):
    r = _subprocess([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
                     "cuda or device", "tests/"], timeout=args.tests_timeout)
    m = re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", r["tail"])
    r["counts"] = {k: int(v) for v, k in m}
    return r


def step_benchmarks(args):
    env = {}
    if args.tiny:       # a small MLP, one thread: it checks that they run, not the numbers
        online = ["--steps", "2", "--repeat", "1"]
        hyper = ["--T", "4", "--repeat", "1"]
        env = {"HYPERGRAD_BENCH_SIZES": "784,16,10", "OMP_NUM_THREADS": "1"}
    else:
        online, hyper = ["--steps", "20", "--repeat", "5"], ["--T", "300", "--repeat", "3"]
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = {}
    for name, extra in (("bench_online", online), ("bench_hypergradient", hyper)):
        r = _subprocess([sys.executable, "-m", f"benchmarks.{name}", "--device", args.device,
                         *extra], timeout=args.bench_timeout, env_extra=env)
        r["lines"] = [ln for ln in r["tail"].splitlines()
                      if ln.startswith(("RATIO", "MARTHE", "HD", "RTHO", "time", "memory",
                                        "torch.optim", "hg.", "double", "relative"))]
        out[name] = r
    return out


def _task(args):
    """The paper's MNIST MLP problem (or the tiny one): net, dyn, objective, params, batches."""
    from hypergrad.models import MLP, functional, module_loss, module_objective

    sizes = (784, 16, 10) if args.tiny else (784, 500, 500, 500, 10)
    dev = args.device
    if os.environ.get("HYPERGRAD_DATA"):
        from hypergrad.data import mnist_split, sample_batches

        data = mnist_split(7000, 700, seed=0, device=dev)
        train, val = data["train"], data["val"]

        def batches(T, seed=1):
            return sample_batches(train, 100, T, seed=seed)
    else:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(7000, 784, generator=g), torch.randint(0, 10, (7000,), generator=g)
        val = (torch.randn(700, 784, generator=g).to(dev), torch.randint(0, 10, (700,), generator=g).to(dev))

        def batches(T, seed=1):
            idx = torch.randint(0, 7000, (T, 100), generator=torch.Generator().manual_seed(seed))
            return [(x[i].to(dev), y[i].to(dev)) for i in idx]
    torch.manual_seed(0)
    net = MLP(sizes).to(dev)
    return {"sizes": list(sizes), "dyn": hg.sgd(module_loss(net)), "net": net, "val": val,
            "objective": module_objective(net, val), "params": functional(net)[0],
            "batches": batches}


def step_population(args, task):
    """Throughput of :func:`hypergrad.population.run_population`: N MARTHE runs (adaptive μ)
    as one vmap-ed computation, in member-steps per second, for N = 1, 8, 64 (tiny: 1, 2)."""
    import torch.nn.functional as F
    from torch.func import functional_call

    from hypergrad.population import run_population

    net, params, K = task["net"], task["params"], args.steps
    xv, yv = task["val"]

    def objective(p, vb):
        return F.cross_entropy(functional_call(net, p, (vb[0],)), vb[1])

    out = {}
    for n in ((1, 2) if args.tiny else (1, 8, 64)):
        try:
            stacked = {k: v.unsqueeze(0).expand(n, *v.shape).clone() for k, v in params.items()}
            batches = [tuple(t.unsqueeze(0).expand(n, *t.shape) for t in b)
                       for b in task["batches"](K + 2, seed=n)]
            val = (xv.unsqueeze(0).expand(n, *xv.shape), yv.unsqueeze(0).expand(n, *yv.shape))

            def go(stacked=stacked, batches=batches, val=val):
                run_population(task["dyn"], stacked, batches, objective, val, lr=0.05,
                               beta=1e-4, mu="auto")

            go_warm = batches[:2]
            run_population(task["dyn"], stacked, go_warm, objective, val, lr=0.05, beta=1e-4,
                           mu="auto")
            seconds = _timed(go, args.device, repeat=2)
            out[str(n)] = {"member_steps_per_s": n * (K + 2) / seconds, "seconds": seconds}
        except Exception as e:          # recorded, the check carries on
            out[str(n)] = {"error": f"{type(e).__name__}: {e}"}
    return {"status": "measured", "steps": K + 2, "throughput": out}


def step_paper_slice(args, task):
    dev, K = args.device, args.steps
    dyn, objective, params = task["dyn"], task["objective"], task["params"]
    batches = task["batches"](K + 3)
    warm, run = batches[:3], batches[3:]
    per_step = {}

    def sgd():
        s = dyn.init(params)
        for b in run:
            s = dyn.step(s, 0.05, b)

    per_step["sgd"] = _timed(sgd, dev, repeat=2) / K
    for name, (mu, kappa) in METHODS.items():
        tuner = hg.Marthe(dyn, lr=0.05, beta=1e-4, mu=mu, kappa=kappa)
        o = tuner.init(params)
        for b in warm:
            o, _ = tuner.step(o, b, objective)

        def go(t=tuner, o=o):
            for b in run:
                o, _ = t.step(o, b, objective)

        per_step[name] = _timed(go, dev, repeat=2) / K
    T = args.lrs_T
    lrs = torch.full((T,), 0.05, device=dev)
    hb = task["batches"](T, seed=2)
    t_hg = _timed(lambda: hg.hypergradient(dyn, params, lrs, hb, objective), dev)
    t_iter = t_hg * SECTION5["lrs_opt_T"] / T
    s5, ac = SECTION5, APPENDIX_C
    online_s = s5["seeds"] * s5["betas"] * s5["steps"] * sum(per_step[m] for m in METHODS)
    lrs_pgd = s5["lrs_opt_seeds"] * s5["lrs_opt_iterations"] * t_iter
    lrs_fast = lrs_pgd / 10
    appc = ac["seeds"] * ac["betas"] * ac["mus"] * ac["steps"] * per_step["marthe-mu0.9"]
    h = 3600.0
    return {"sizes": task["sizes"], "steps_timed": K,
            "per_step_s": {k: round(v, 6) for k, v in per_step.items()},
            "lrs_opt": {"T_measured": T, "hypergradient_s": round(t_hg, 4),
                        "iteration_s_at_T500": round(t_iter, 4),
                        "scaled_linearly": T != SECTION5["lrs_opt_T"]},
            "projection_serial_h": {
                "section5_online": round(online_s / h, 3),
                "section5_lrs_opt_pgd_5000": round(lrs_pgd / h, 3),
                "section5_lrs_opt_fast_500": round(lrs_fast / h, 3),
                "appendix_c": round(appc / h, 3),
                "assumptions": "serial, one run at a time; per-step cost x steps; no kappa "
                               "re-runs; LRS-OPT cost linear in T; fixed-mu cost for Appendix C"}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tiny", action="store_true", help="CI size (CPU, < 60 s)")
    p.add_argument("--steps", type=int, default=None, help="steps per timing (default 30; tiny 2)")
    p.add_argument("--lrs-T", type=int, default=None, help="T of the timed hypergradient "
                   "(default 500; tiny 4); scaled linearly to T = 500")
    p.add_argument("--skip", default="", help="comma-separated steps to skip "
                   "(tests,benchmarks,population,paper_slice)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    p.add_argument("--tests-timeout", type=int, default=180)
    p.add_argument("--bench-timeout", type=int, default=150)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device!r}: CUDA is not available here (use --device cpu)")
    args.steps = args.steps or (2 if args.tiny else 30)
    args.lrs_T = args.lrs_T or (4 if args.tiny else 500)
    if args.tiny and not args.threads:
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    if args.tiny:
        skip.add("tests")
    t0 = time.perf_counter()
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    report = {"meta": run_metadata(), "args": vars(args), "steps": {},
              "hardware": {"device": args.device, "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                           "load_average_at_start": os.getloadavg(),
                           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                           "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory
                                                   / 2**30, 1) if torch.cuda.is_available() else None}}
    task = None
    for name in ("tests", "benchmarks", "population", "paper_slice"):
        if name in skip:
            report["steps"][name] = {"status": "skipped"}
            continue
        s0 = time.perf_counter()
        try:
            if name in ("population", "paper_slice") and task is None:
                task = _task(args)
            fn = {"tests": lambda: step_tests(args), "benchmarks": lambda: step_benchmarks(args),
                  "population": lambda task=task: step_population(args, task),
                  "paper_slice": lambda task=task: step_paper_slice(args, task)}[name]
            report["steps"][name] = fn()
        except Exception as e:          # recorded; the other steps still run
            report["steps"][name] = {"error": f"{type(e).__name__}: {e}"}
        if isinstance(report["steps"][name], dict):
            report["steps"][name]["step_wall_s"] = round(time.perf_counter() - s0, 2)
        print(f"[device_check] {name} done after {time.perf_counter() - t0:.1f} s", flush=True)
    if torch.device(args.device).type == "cuda":
        report["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        report["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    report["hardware"]["load_average_at_end"] = os.getloadavg()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    tag = "tiny" if args.tiny else "full"
    path = Path(args.out) / f"device_check_{args.device.replace(':', '')}_{tag}_{stamp}.json"
    atomic_write_json(path, report)
    sl = report["steps"].get("paper_slice", {})
    if "projection_serial_h" in sl:
        print(json.dumps({"per_step_s": sl["per_step_s"], "lrs_opt": sl["lrs_opt"],
                          "projection_serial_h": sl["projection_serial_h"]}, indent=1))
    print(f"[device_check] wrote {path} ({report['wall_s']} s)")
    failed = [n for n, r in report["steps"].items() if "error" in r
              or (n == "tests" and r.get("rc") not in (0, None))
              or (n == "benchmarks" and any(b.get("rc") != 0 for b in r.values()
                                            if isinstance(b, dict)))]
    if failed:
        print(f"[device_check] FAILED steps (details in the JSON): {failed}")
    return path, failed


if __name__ == "__main__":
    sys.exit(1 if main()[1] else 0)
