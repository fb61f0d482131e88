"""The device-resident loader: a split held as one tensor on the training device, shuffled,
cropped, flipped and normalised as batched tensor ops (no PIL, no worker processes)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from resnet_lab.cifar10 import MEAN, STD
from resnet_lab.device import pick_device


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, per-channel standardised with the CIFAR-10 statistics."""
    mean = torch.tensor(MEAN, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    return (images.to(dtype) - mean) / std


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool | torch.Tensor = True
) -> torch.Tensor:
    """Each image its own random crop (after ``pad`` pixels of zero padding) and its own
    horizontal flip with probability 1/2, as one batched gather. (B, C, H, W) -> same shape.
    ``flip`` may instead be a bool tensor (B,) saying which images to mirror.

    The randomness comes from ``generator`` (on the CPU), so results are deterministic by seed
    on every device.
    """
    b, c, h, w = images.shape
    dev = images.device
    if pad:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        images = padded[bi, ci, rows, cols]  # (B, C, H, W)
    if not isinstance(flip, torch.Tensor):  # True: each image its own coin
        flip = (torch.rand(b, generator=generator) < 0.5) if flip else None
    if flip is not None:
        images = torch.where(flip.to(dev)[:, None, None, None], images.flip(3), images)
    return images


class CifarLoader:
    """Batches from tensors held on the target device; augmentation as batched tensor ops.

    ``train=True``: reshuffled every epoch, each image its own random crop (4-pixel padding)
    and flip. ``train=False``: fixed order, no augmentation. Iterating yields normalised float
    images (B, 3, 32, 32) and int64 labels (B,), on ``device``. Shuffling and augmentation are
    seeded by (seed, epoch), so an epoch is reproducible on its own (that is what makes an
    interrupted-and-resumed run identical to an uninterrupted one).

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
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
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

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=g).to(self.device) if self.train else None
        flip = self.flip
        if flip == "alternate":  # one bit per image for the whole run, inverted every other epoch
            bits = torch.rand(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + 999_999)) < 0.5
            flip = bits.to(self.device) ^ bool(self.epoch % 2)
        if self.train:
            self.epoch += 1
        for i in range(len(self)):
            if order is None:
                sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
                x, y = self.images[sl], self.labels[sl]
            else:
                idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            if self.crop_pad or self.flip:
                batch_flip = flip[idx] if isinstance(flip, torch.Tensor) else flip
                x = random_crop_flip(x, g, self.crop_pad, batch_flip)
            x = normalize(x, self.dtype)
            if self.size != x.shape[-1]:
                x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                                    antialias=True, align_corners=False)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalize`: float images back to [0, 1], for plotting."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() * std + mean).clamp(0, 1)
