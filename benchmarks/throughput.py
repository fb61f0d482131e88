"""Training throughput: resnet_lab's pipeline against the standard recipe a reader would write.

Both train ResNet-20 at the same batch size on the same CIFAR-10 images, measured in one run,
alternating, several rounds; medians are reported. A benchmark, not a test.

- standard: a torchvision-style Dataset of PIL images with RandomCrop(32, padding=4) +
  RandomHorizontalFlip + ToTensor + Normalize, a DataLoader (2 workers), eager fp32 model.
- resnet_lab: CifarLoader (the split as one tensor, crop and flip as batched ops) feeding a
  train step with the fastest settings that help here: bf16 autocast where supported,
  channels_last, torch.compile.

    python benchmarks/throughput.py [--batch-size 128] [--steps 40] [--rounds 3]

The last line reads ``speedup N.NNx``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from resnet_lab.cifar10 import MEAN, STD, load_cifar10
from resnet_lab.device import autocast_context, hardware_name, pick_device, resolve_precision
from resnet_lab.loader import CifarLoader
from resnet_lab.models import resnet20


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


def forever(loader):
    while True:
        yield from loader


def make_step(model, optimizer, precision: str, device, channels_last: bool):
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # fp16 needs its gradients scaled
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
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
    std_step = make_step(
        std_model,
        torch.optim.SGD(std_model.parameters(), lr=0.05, momentum=0.9),
        "fp32",
        device,
        False,
    )

    precision = resolve_precision(device, "auto")  # bf16 where fast, fp16 on older GPUs, else fp32
    fast_loader = CifarLoader(
        data.train_images, data.train_labels, args.batch_size, device=device, channels_last=True
    )
    torch.manual_seed(0)
    fast_model = resnet20().to(device).to(memory_format=torch.channels_last)
    fast_opt = torch.optim.SGD(fast_model.parameters(), lr=0.05, momentum=0.9)
    fast_step = make_step(torch.compile(fast_model), fast_opt, precision, device, False)
    print(f"resnet_lab settings: CifarLoader, {precision} autocast, channels_last, torch.compile")

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
    print(f"speedup {fast / std:.2f}x")


if __name__ == "__main__":
    main()
