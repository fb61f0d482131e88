"""The device-resident loader: a split held as one tensor on the training device, shuffled,
cropped, flipped and normalised as batched tensor ops (no PIL, no worker processes).

:class:`CifarLoader` draws an epoch's order, crop offsets and flip bits at the start of the
epoch, from a generator seeded by (seed, epoch), and moves them to the device in one copy each.
A batch is then slices and gathers on the device: on CUDA the loop never waits for the host,
as a copy from host memory per batch would make it wait for the GPU work already queued.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from resnet_lab.cifar10 import MEAN, STD
from resnet_lab.device import pick_device


def channel_stats(device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The CIFAR-10 mean and std in pixel units (0-255), each (1, 3, 1, 1), on ``device``."""
    mean = torch.tensor(MEAN, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
    return mean, std


def normalize(
    images: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    *,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, per-channel standardised with the CIFAR-10 statistics.
    ``stats``: the :func:`channel_stats` of the images' device and ``dtype``, made once by a
    caller that normalises many batches; made here when not given."""
    mean, std = stats if stats is not None else channel_stats(images.device, dtype)
    return (images.to(dtype) - mean) / std


def draw_crop_flip(
    n: int, generator: torch.Generator, pad: int = 4, flip: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Crop offsets ``dy``, ``dx`` in 0..2*pad and flip bits for ``n`` images, (n,) each,
    drawn on the CPU from ``generator`` in this order; ``None`` for what is not drawn."""
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator) if pad else None
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator) if pad else None
    flips = torch.rand(n, generator=generator) < 0.5 if flip else None
    return dy, dx, flips


def crop_flip(
    images: torch.Tensor,
    dy: torch.Tensor | None,
    dx: torch.Tensor | None,
    flip: torch.Tensor | None,
    pad: int = 4,
) -> torch.Tensor:
    """Image i cropped at row dy[i], column dx[i] of its zero-padded
    self (``pad`` pixels each side), then mirrored where ``flip[i]``
    is set, all as one gather: (B, C, H, W) -> same shape.
    ``dy``, ``dx``, ``flip``: (B,) tensors on the images' device, or
    None for no crop (``pad=0``) or no flip."""
    b, c, h, w = images.shape
    dev = images.device
    if pad:
        padded = F.pad(images, (pad, pad, pad, pad))
        rows = dy[:, None] + torch.arange(h, device=dev)  # (B, H)
        cols = dx[:, None] + torch.arange(w, device=dev)  # (B, W)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        rows, cols = rows[:, None, :, None], cols[:, None, None, :]
        images = padded[bi, ci, rows, cols]  # (B, C, H, W)
    if flip is not None:
        mirrored = images.flip(3)
        images = torch.where(flip[:, None, None, None], mirrored, images)
    return images


def random_crop_flip(
    images: torch.Tensor,
    generator: torch.Generator,
    pad: int = 4,
    flip: bool | torch.Tensor = True,
) -> torch.Tensor:
    """Each image its own random crop after ``pad`` pixels of zero
    padding, and its own horizontal flip with probability 1/2:
    (B, C, H, W) -> same shape. ``flip`` may instead be a bool (B,)
    tensor saying which images to mirror.

    The randomness comes from ``generator`` (on the CPU), so results
    are deterministic by seed on every device.
    """
    given = isinstance(flip, torch.Tensor)
    draw = not given and bool(flip)
    dy, dx, flips = draw_crop_flip(len(images), generator, pad, flip=draw)
    if given:
        flips = flip
    dev = images.device
    dy, dx, flips = (t if t is None else t.to(dev) for t in (dy, dx, flips))
    return crop_flip(images, dy, dx, flips, pad)


class CifarLoader:
    """Batches from tensors held on the target device; augmentation as batched tensor ops.

    ``train=True``: reshuffled every epoch, each image its own random crop (4-pixel padding)
    and flip. ``train=False``: fixed order, no augmentation. Iterating yields normalised float
    images (B, 3, 32, 32) and int64 labels (B,), on ``device``.

    :meth:`set_epoch` chooses the epoch that the next pass yields, as ``set_epoch`` does for
    torch's ``DistributedSampler``: shuffling and augmentation are seeded by (seed, epoch), so an
    epoch is reproducible on its own (that is what makes an interrupted-and-resumed run identical
    to an uninterrupted one). Passes without it repeat the same epoch; the trainer calls it
    before each one.

    ``flip="alternate"``: alternating flips (Jordan 2024, airbench): each image gets one random
    bit for the whole run; even epochs mirror the images whose bit is set, odd epochs the others,
    so every image is seen both ways in any two consecutive epochs. ``size`` (set between
    epochs) trains on images resized to ``size`` x ``size`` pixels: progressive resizing.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 512,
        *,
        train: bool = True,
        device: str | torch.device = "auto",
        seed: int = 0,
        crop_pad: int = 4,
        flip: bool | str = True,
        drop_last: bool | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if flip not in (True, False, "alternate"):
            raise ValueError(f"flip must be True, False or 'alternate', got {flip!r}")
        self.device = pick_device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.crop_pad = crop_pad if train else 0
        self.flip = flip if train else False
        self.size = images.shape[-1]  # side of the images yielded (training: progressive resizing)
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last = channels_last
        self.dtype = dtype
        self.epoch = 0
        self.stats = channel_stats(self.device, dtype)  # made once, on the device
        self.alternate_bits = None  # one bit per image for the whole run
        if self.flip == "alternate":
            g = torch.Generator().manual_seed(seed * 1_000_003 + 999_999)
            self.alternate_bits = (torch.rand(len(labels), generator=g) < 0.5).to(self.device)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass yields: its order, crops and flips."""
        self.epoch = epoch

    def _draw_epoch(self, g: torch.Generator):
        """The epoch's order, crop offsets and flip bits, one entry per position in the epoch,
        each moved to the device once. Drawn batch by batch, in the order the loader drew them
        when it drew them per batch, so that the batches of a (seed, epoch) stay the same."""
        n = len(self.labels)
        order = torch.randperm(n, generator=g).to(self.device) if self.train else None
        if not (self.crop_pad or self.flip):
            return order, None, None, None
        sizes = [min(self.batch_size, n - i * self.batch_size) for i in range(len(self))]
        if not sizes:
            return order, None, None, None
        draws = [draw_crop_flip(b, g, self.crop_pad, self.flip is True) for b in sizes]
        dy, dx, flips = (
            None if d[0] is None else torch.cat(d).to(self.device) for d in zip(*draws)
        )
        if self.flip == "alternate":  # the run's bits, inverted every other epoch
            flips = (self.alternate_bits ^ bool(self.epoch % 2))[order[: sum(sizes)]]
        return order, dy, dx, flips

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order, dy, dx, flips = self._draw_epoch(g)
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = sl if order is None else order[sl]
            x, y = self.images[idx], self.labels[idx]
            if self.crop_pad or self.flip:
                x = crop_flip(
                    x, *(None if t is None else t[sl] for t in (dy, dx, flips)), self.crop_pad
                )
            x = normalize(x, self.dtype, stats=self.stats)
            if self.size != x.shape[-1]:
                x = F.interpolate(
                    x,
                    size=(self.size, self.size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
