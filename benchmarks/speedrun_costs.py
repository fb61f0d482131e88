"""What the speed run's techniques cost per epoch on this machine: training-step time of the
speed-run network (ResNet-14 at width 32, bf16, channels_last, torch.compile), timed through the
trainer's own build_run and train_step, at batch 256 and
512, at 32x32 and at 24x24 pixels (progressive resizing), and the EMA update per step.

    python benchmarks/speedrun_costs.py [--steps 20]

Prints seconds per epoch of 50,000 images for each setting (compile time excluded and reported
apart). Alternating flips and the BN-bias learning rate change no arithmetic: they cost nothing.
A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from resnet_lab.cifar10 import load_cifar10
from resnet_lab.device import hardware_name
from resnet_lab.distributed import Ranks
from resnet_lab.lab.experiments import EXPERIMENTS
from resnet_lab.lab.names import build_model
from resnet_lab.run import build_run
from resnet_lab.train import train_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_image(data, batch: int, size: int, steps: int) -> tuple[float, float]:
    """The trainer's own step (build_run, train_step) on the speed run's network and recipe at
    ``batch`` and ``size`` x ``size`` pixels: seconds per image, and the compile seconds."""
    exp = EXPERIMENTS["cpu_speedrun"]
    cfg = replace(exp.config, batch_size=batch, epochs=1, eval_every=1, precision="bf16")
    torch.manual_seed(0)
    run = build_run(build_model(exp.model, **exp.model_kwargs), data, cfg, Ranks(), None)
    run.train_loader.size = size
    batches = iter(run.train_loader)
    t0 = time.perf_counter()
    for _ in range(2):  # compile for this shape, then one step more
        train_step(run, *next(batches))
    sync(run.device)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(run, *next(batches))
    sync(run.device)
    return (time.perf_counter() - t0) / (steps * batch), compile_s


def ema_seconds(data) -> tuple[float, str]:
    """Seconds per EMA update (decay 0.999) of the speed run's network, and the device."""
    exp = EXPERIMENTS["cpu_speedrun"]
    cfg = replace(exp.config, epochs=1, ema=0.999, compile=False)
    run = build_run(build_model(exp.model, **exp.model_kwargs), data, cfg, Ranks(), None)
    run.ema.update_parameters(run.model)
    t0 = time.perf_counter()
    for _ in range(50):
        run.ema.update_parameters(run.model)
    sync(run.device)
    return (time.perf_counter() - t0) / 50, hardware_name(run.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    data = load_cifar10()
    per_update, hardware = ema_seconds(data)
    print(f"{hardware}, torch {torch.__version__}, {torch.get_num_threads()} threads, bf16")
    results = {}
    for batch, size in ((256, 32), (256, 24), (512, 32), (512, 24)):
        per_image, compile_s = seconds_per_image(data, batch, size, args.steps)
        results[batch, size] = per_image
        print(
            f"batch {batch}, {size}x{size}: {50_000 * per_image:6.1f} s per epoch "
            f"({1 / per_image:5.0f} img/s; compile and first steps {compile_s:.0f} s)",
            flush=True,
        )
    print(
        f"EMA update: {1000 * per_update:.2f} ms per step "
        f"({195 * per_update:.1f} s per epoch at batch 256)"
    )
    base = results[256, 32]
    for (batch, size), t in results.items():
        print(f"relative cost, batch {batch} at {size}x{size}: {t / base:.3f}")


if __name__ == "__main__":
    main()
