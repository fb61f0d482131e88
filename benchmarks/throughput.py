"""Training throughput: resnet_lab's pipeline against the standard recipe a reader would write.

Both train ResNet-20 at the same batch size on the same CIFAR-10 images, measured in one run,
alternating, several rounds; medians are reported. A benchmark, not a test.

- standard: a torchvision-style Dataset of PIL images with RandomCrop(32, padding=4) +
  RandomHorizontalFlip + ToTensor + Normalize, a DataLoader (2 workers), eager fp32 model.
- resnet_lab: the trainer itself: :func:`resnet_lab.run.build_run` (CifarLoader: the split
  as one tensor, crop and flip as batched ops) and its :func:`~resnet_lab.train.train_step`,
  with the fastest settings that help here: bf16 autocast where supported, channels_last,
  torch.compile. So the figure is what a reader's ``train()`` runs, not a copy of it.

    python benchmarks/throughput.py [--batch-size 128] [--steps 40] [--rounds 3] [--sync-debug]

The last line reads ``speedup N.NNx``. With ``--sync-debug`` on CUDA, the trainer's steps run
once more under ``torch.cuda.set_sync_debug_mode("warn")`` and every host synchronisation they
make is listed by where it happens (none should be left in the step loop).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

from resnet_lab.cifar10 import MEAN, STD, load_cifar10
from resnet_lab.config import TrainConfig
from resnet_lab.device import hardware_name, pick_device
from resnet_lab.distributed import Ranks
from resnet_lab.models import resnet20
from resnet_lab.run import build_run
from resnet_lab.train import train_step


class StandardCIFAR(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does: PIL images through per-sample transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()  # HWC uint8, as torchvision stores them
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def time_steps(step, batches, n_steps: int, warmup: int) -> float:
    """Images per second over ``n_steps`` steps after ``warmup`` untimed ones (data included)."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    t0 = time.perf_counter()
    seen = 0
    for _ in range(n_steps):
        x, y = next(it)
        step(x, y)
        seen += len(y)
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # GPU work is asynchronous: wait for it before reading the clock
    return seen / (time.perf_counter() - t0)


def sync_points(step, batches, n_steps: int) -> collections.Counter:
    """Where ``n_steps`` of ``step`` make the host wait for the GPU: a count per source line that
    torch's sync debug mode names in its warning (torch's own lines included)."""
    seen: collections.Counter = collections.Counter()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(n_steps):
                step(*next(batches))
        for w in caught:
            if "synchroniz" in str(w.message):
                seen[f"{w.filename}:{w.lineno}"] += 1
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return seen


def forever(loader):
    while True:
        yield from loader


def standard_step(model, optimizer, device):
    """The training step a reader writes first: fp32, eager, one batch at a time."""

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    import torchvision.transforms as T

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sync-debug", action="store_true", help="on CUDA: list host syncs")
    args = p.parse_args()

    device = pick_device("auto")
    data = load_cifar10()
    print(f"data: {data.source}\ndevice: {hardware_name(device)}, torch {torch.__version__}")

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    std_loader = torch.utils.data.DataLoader(
        StandardCIFAR(data.train_images, data.train_labels, transform),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        persistent_workers=args.workers > 0,
    )
    torch.manual_seed(0)
    std_model = resnet20().to(device)
    std_opt = torch.optim.SGD(std_model.parameters(), lr=0.05, momentum=0.9)
    std_step = standard_step(std_model, std_opt, device)

    # the trainer's own run and step; precision "auto": bf16 where fast, fp16 on older GPUs
    cfg = TrainConfig(
        epochs=1,
        batch_size=args.batch_size,
        lr=0.05,
        weight_decay=0.0,
        schedule="constant",
        channels_last=True,
        compile=True,
    )
    torch.manual_seed(0)
    run = build_run(resnet20(), data, cfg, Ranks(), folder=None)
    fast_loader = run.train_loader

    def fast_step(x, y):
        train_step(run, x, y)

    print(
        f"resnet_lab settings: build_run + train_step, {run.precision} autocast, "
        "channels_last, torch.compile"
    )

    t0 = time.perf_counter()
    time_steps(fast_step, forever(fast_loader), 1, 2)  # compile outside the timed rounds
    print(f"compiled in {time.perf_counter() - t0:.0f} s")

    std_rates, fast_rates = [], []
    std_batches, fast_batches = forever(std_loader), forever(fast_loader)
    for r in range(args.rounds):
        std_rates.append(time_steps(std_step, std_batches, args.steps, 3))
        fast_rates.append(time_steps(fast_step, fast_batches, args.steps, 3))
        print(
            f"round {r + 1}: standard {std_rates[-1]:7.0f} img/s   "
            f"resnet_lab {fast_rates[-1]:7.0f} img/s"
        )
    std, fast = statistics.median(std_rates), statistics.median(fast_rates)
    print(
        f"median: standard {std:.0f} img/s, resnet_lab {fast:.0f} img/s "
        f"(ResNet-20, batch {args.batch_size})"
    )
    if args.sync_debug and torch.cuda.is_available():
        found = sync_points(fast_step, fast_batches, args.steps)
        print(f"host syncs in {args.steps} trainer steps: {sum(found.values())}")
        for where, n in found.most_common():
            print(f"  {n:5d}  {where}")
    elif args.sync_debug:
        print("--sync-debug: no CUDA here, nothing to list")
    print(f"speedup {fast / std:.2f}x")


if __name__ == "__main__":
    main()
