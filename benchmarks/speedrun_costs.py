"""What the speed run's techniques cost per epoch on this machine: training-step time of the
speed-run network (ResNet-14 at width 32, bf16, channels_last, torch.compile) at batch 256 and
512, at 32x32 and at 24x24 pixels (progressive resizing), and the EMA update per step.

    python benchmarks/speedrun_costs.py [--steps 20]

Prints seconds per epoch of 50,000 images for each setting (compile time excluded and reported
apart). Alternating flips and the BN-bias learning rate change no arithmetic: they cost nothing.
A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from resnet_lab.cifar10 import load_cifar10
from resnet_lab.device import autocast_context, hardware_name, pick_device, resolve_precision
from resnet_lab.loader import CifarLoader
from resnet_lab.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    device = pick_device("auto")
    precision = resolve_precision(device, "bf16")
    data = load_cifar10()
    torch.manual_seed(0)
    model = build_model("resnet14", width=32).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    step_model = torch.compile(model, dynamic=False)
    autocast = autocast_context(device, precision)
    print(
        f"{hardware_name(device)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {precision}"
    )

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(x, y):
        with autocast:
            loss = F.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    results = {}
    for batch, size in ((256, 32), (256, 24), (512, 32), (512, 24)):
        loader = CifarLoader(
            data.train_images, data.train_labels, batch, device=device, channels_last=True
        )
        loader.size = size
        batches = iter(loader)
        t0 = time.perf_counter()
        for _ in range(2):  # compile for this shape, then one step more
            step(*next(batches))
        sync()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(*next(batches))
        sync()
        per_image = (time.perf_counter() - t0) / (args.steps * batch)
        results[batch, size] = per_image
        print(
            f"batch {batch}, {size}x{size}: {50_000 * per_image:6.1f} s per epoch "
            f"({1 / per_image:5.0f} img/s; compile and first steps {compile_s:.0f} s)",
            flush=True,
        )

    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=False)
    ema.update_parameters(model)
    t0 = time.perf_counter()
    for _ in range(50):
        ema.update_parameters(model)
    sync()
    per_update = (time.perf_counter() - t0) / 50
    print(
        f"EMA update: {1000 * per_update:.2f} ms per step "
        f"({195 * per_update:.1f} s per epoch at batch 256)"
    )
    base = results[256, 32]
    for (batch, size), t in results.items():
        print(f"relative cost, batch {batch} at {size}x{size}: {t / base:.3f}")


if __name__ == "__main__":
    main()
