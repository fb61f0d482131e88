"""Run a sweep's small runs side by side on one GPU, one process each, until a deadline.

A small CIFAR network leaves most of a large GPU idle: its step time is kernel launches, not
arithmetic. Several processes, each its own run, fill it. Each run is an ordinary
``run_experiment`` (checkpoints in ``runs/``, the record in ``results/``); runs already recorded
are skipped; seeds go in order (every experiment's seed 0 first), so a deadline leaves whole
seeds behind. A run still going at the deadline is stopped; the same command resumes it.

    python benchmarks/gpu_sweep.py speedrun --seeds 0 1 2 --workers 8 --deadline 480 [--eager]

Not for the CPU: on a few cores, parallel runs only slow each other down (use
``python -m resnet_lab experiment NAME``, one run at a time).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import time


def _run(
    name: str, seed: int, workers: int, eager: bool
) -> tuple[str, int, float | None, float, str]:
    import torch

    torch.set_num_threads(1)
    from resnet_lab.lab.experiments import record_path, run_experiment

    t0 = time.perf_counter()
    try:
        h = run_experiment(name, seed=seed, progress=False, **({"compile": False} if eager else {}))
        if not h.interrupted:  # say how the time was measured
            h.meta["gpu_shared_by"] = (
                f"{workers} runs side by side (benchmarks/gpu_sweep.py): seconds are not one run's"
            )
            h.save(record_path(name, seed))
        return name, seed, h.final["test_acc"], time.perf_counter() - t0, ""
    except Exception as e:
        return name, seed, None, time.perf_counter() - t0, f"{type(e).__name__}: {e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a sweep or experiment of resnet_lab.lab.experiments")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--deadline", type=float, default=480, help="seconds after which no run starts")
    ap.add_argument(
        "--eager",
        action="store_true",
        help="no torch.compile (saves each process its compile time)",
    )
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the workers inherit it
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "2")

    from resnet_lab.cifar10 import load_cifar10
    from resnet_lab.lab.experiments import run_name, runs_to_do

    load_cifar10()  # decode and cache once, before the workers read the cache
    todo = sorted(runs_to_do(args.name, args.seeds), key=lambda r: r[1])
    print(f"{len(todo)} runs to do with {args.workers} workers", flush=True)
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        pending = {
            pool.submit(_run, n, s, args.workers, args.eager) for n, s in todo[: args.workers]
        }
        queue = todo[args.workers :]
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in done:
                name, seed, acc, secs, err = f.result()
                what = f"{100 * acc:.2f}%" if acc is not None else f"failed: {err}"
                print(
                    f"[{time.perf_counter() - t0:5.0f} s] {run_name(name, seed)}: "
                    f"{what} ({secs:.0f} s)",
                    flush=True,
                )
                if queue and time.perf_counter() - t0 < args.deadline:
                    pending.add(pool.submit(_run, *queue.pop(0), args.workers, args.eager))
    print(f"not started (deadline): {[run_name(n, s) for n, s in queue]}", flush=True)


if __name__ == "__main__":
    main()
