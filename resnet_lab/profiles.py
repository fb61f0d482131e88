"""Run profiles: how much work a chapter's heavy cells do.

``RESNET_LAB_PROFILE`` = ``smoke`` | ``cpu`` | ``gpu``; unset, it follows the hardware (``gpu``
when CUDA is available, else ``cpu``). ``smoke`` is what CI runs: the whole book in minutes on
two cores, numbers that only show the code works. ``cpu`` gives meaningful results in minutes
on a laptop; ``gpu`` runs the full experiments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

PROFILE_NAMES = ("smoke", "cpu", "gpu")


@dataclass(frozen=True)
class Profile:
    name: str
    train_subset: int | None  # class-balanced training images for live experiments (None: all 50k)
    test_subset: int | None  # test images for live evaluations (None: all 10k)
    epochs: int  # epochs of a live training demo
    race_epochs: int  # epochs of each run in the plain-vs-residual race
    batch_size: int
    depths: tuple[int, ...]  # depths compared in live depth experiments

    def describe(self) -> str:
        train = "all" if self.train_subset is None else f"{self.train_subset:,}"
        test = "all" if self.test_subset is None else f"{self.test_subset:,}"
        return f"profile '{self.name}': {train} training / {test} test images, {self.epochs} epochs"


PROFILES = {
    "smoke": Profile("smoke", 2_000, 1_000, 2, 2, 128, (8, 20)),
    "cpu": Profile("cpu", 5_000, 2_000, 8, 5, 128, (20, 56)),
    "gpu": Profile("gpu", None, None, 30, 20, 128, (20, 56)),
}


def current_profile() -> Profile:
    """The profile named by ``$RESNET_LAB_PROFILE``, else the one that fits the hardware."""
    name = os.environ.get("RESNET_LAB_PROFILE", "").strip().lower()
    if not name:
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"RESNET_LAB_PROFILE must be one of {PROFILE_NAMES}, got {name!r}")
    return PROFILES[name]
