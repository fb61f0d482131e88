"""Run profiles: how much work a chapter's training cells do, sized by time.

``RESNET_LAB_PROFILE`` = ``smoke`` | ``cpu`` | ``gpu``; unset, it follows the hardware (``gpu``
when CUDA is available, else ``cpu``).

- ``smoke``: what CI runs, the whole book in a few minutes on two cores; numbers that only show
  that the code works.
- ``cpu``: ``make book`` runs every chapter in at most 10 minutes on a 2-core CPU (training at
  most :data:`CPU_TRAIN_SECONDS` of it, at :data:`CPU_RATE`); results that show the effects.
- ``gpu``: each chapter in at most 5 minutes on a T4-class GPU (Colab's free one), training at
  most :data:`GPU_TRAIN_SECONDS` per chapter at :data:`T4_RATE`, an estimate (see below).

The work is counted, not guessed: :func:`training_work` adds up images x epochs x network cost
for every training cell of every chapter, and a test keeps each profile inside its budget. The
rates it divides by are not both measured: :data:`CPU_RATE` is below a measured figure, and
:data:`T4_RATE` is an estimate that no T4 has measured yet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import torch

from resnet_lab.book.analysis import count_macs
from resnet_lab.models import cifar_resnet, resnet18

PROFILE_NAMES = ("smoke", "cpu", "gpu")

# Training throughput in ResNet-20 images per second (forward + backward + step, batch 128).
# CPU: 2 cores with bf16 (AVX-512/AMX), bf16 autocast + channels_last, eager: 830 img/s measured on
# the project's 2-core machine (shared/GUIDE.md); we budget with 700 to leave room for noise.
CPU_RATE = 700
# T4: an estimate, not a measurement (no T4 has run this trainer). A T4 is taken to be about a
# fifth of an H100 (fp16 + GradScaler, no bf16 tensor cores); an H200 trained ResNet-20 at about
# 20,000 img/s with this trainer (GUIDE.md), and a fifth of the slower H100 is taken as 3,000.
# Replace it with a measured figure when a T4 measures one.
T4_RATE = 3000
CPU_TRAIN_SECONDS = (
    6 * 60
)  # of the 10-minute cpu book: the rest is kernels, data, evaluation, figures
GPU_TRAIN_SECONDS = 4 * 60  # of each chapter's 5 minutes on a T4
# Chapter 6's plain program trains ArticleNetFixed in fp32, eager, from torchvision's DataLoader,
# which costs far more than a ResNet-20 image in the package's trainer. CPU: 85-96 images per
# second measured on the project's 2-core machine (batch 32, quiet); we budget with 80.
PLAIN_CPU_RATE = 80
# T4: an estimate, not a measurement. ArticleNetFixed costs about 1.9 GFLOP per training image
# (count_macs x 2 x 3); a T4 sustains roughly 4 fp32 TFLOP/s in convolutions: about 2,000
# images per second, and Colab's two CPUs decode JPEGs or PNGs for it at about that rate.
PLAIN_T4_RATE = 1500


@dataclass(frozen=True)
class Profile:
    name: str
    train_subset: int | None  # class-balanced training images for live training (None: all 50k)
    test_subset: int | None  # test images for live evaluations (None: all 10k)
    epochs: int  # epochs of chapter 6's live training (the package's trainer)
    race_subset: int | None  # training images of each run in chapter 1's plain-vs-residual race
    race_epochs: int  # epochs of each run in the race
    batch_size: int
    depths: tuple[int, ...]  # depths compared in live depth experiments
    transfer_steps: int  # steps of chapter 8's live fine-tune by hand
    transfer_labels: int  # labelled images per class in chapter 8's live runs
    # chapter 6's plain PyTorch program (ArticleNetFixed, torchvision's DataLoader): training
    # and test images, epochs, and the test accuracy it must beat, for any seed (0: no claim)
    plain_train: int = 128
    plain_test: int = 128
    plain_epochs: int = 2
    plain_floor: float = 0.0

    @property
    def imagenet_steps(self) -> int:
        """Steps of chapter 8's online ResNet-18 fine-tune from ImageNet weights (224 pixels)."""
        return max(2, self.transfer_steps // 10)

    def describe(self) -> str:
        train = "all" if self.train_subset is None else f"{self.train_subset:,}"
        test = "all" if self.test_subset is None else f"{self.test_subset:,}"
        return f"profile '{self.name}': {train} training / {test} test images, {self.epochs} epochs"


PROFILES = {
    "smoke": Profile("smoke", 2_000, 1_000, 2, 1_000, 2, 128, (8, 20), 20, 10),
    "cpu": Profile("cpu", 5_000, 2_000, 4, 4_000, 4, 128, (20, 56), 150, 50, 1_000, 400, 4, 0.15),
    "gpu": Profile("gpu", None, None, 10, 20_000, 4, 128, (20, 56), 250, 50, 8_000, 2_000, 8, 0.15),
}


def current_profile() -> Profile:
    """The profile named by ``$RESNET_LAB_PROFILE``, else the one that fits the hardware."""
    name = os.environ.get("RESNET_LAB_PROFILE", "").strip().lower()
    if not name:
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"RESNET_LAB_PROFILE must be one of {PROFILE_NAMES}, got {name!r}")
    return PROFILES[name]


@cache
def relative_cost(depth: int) -> float:
    """Multiply-adds of a CIFAR ResNet (or its plain twin) of ``depth`` per image, relative to
    ResNet-20's (computed, not estimated)."""
    x = torch.zeros(1, 3, 32, 32)
    return count_macs(cifar_resnet(depth), x) / count_macs(cifar_resnet(20), x)


@cache
def imagenet_cost() -> float:
    """Multiply-adds of ResNet-18 on one 224x224 image (what ImageNet weights are fed),
    relative to ResNet-20's on a 32x32 one (computed)."""
    big = count_macs(resnet18(num_classes=4), torch.zeros(1, 3, 224, 224))
    return big / count_macs(cifar_resnet(20), torch.zeros(1, 3, 32, 32))


@cache
def article_cost() -> float:
    """Multiply-adds of chapter 5's ArticleNetFixed per image, relative to ResNet-20's
    (computed): every layer at 32x32 makes it about 7.6 times the arithmetic."""
    from resnet_lab.book.article import ArticleNetFixed  # here: it registers model names

    x = torch.zeros(1, 3, 32, 32)
    return count_macs(ArticleNetFixed(), x) / count_macs(cifar_resnet(20), x)


def plain_work(profile: Profile) -> float:
    """Chapter 6's plain program in ResNet-20 training images of the package's trainer: its
    epochs of training and testing (a test image, forward only, costs about a third of a
    training one) at the plain rate, and the package's one epoch of ArticleNetFixed on the same
    images, for the timing that sets the two side by side."""
    on_gpu = profile.name == "gpu"
    slower = T4_RATE / PLAIN_T4_RATE if on_gpu else CPU_RATE / PLAIN_CPU_RATE
    images = profile.plain_epochs * (profile.plain_train + profile.plain_test / 3)
    return images * slower + profile.plain_train * article_cost()


def training_work(profile: Profile) -> dict[str, float]:
    """ResNet-20 training images (images x epochs x relative network cost) of each chapter's
    live training cells in ``profile``. Mirrors what the chapters run:

    - chapter 1: the race, a plain and a residual network at each depth;
    - chapter 6: the plain program (:func:`plain_work`), then ResNet-20 on the live subset;
    - chapter 7: nothing (it reads recorded runs and weights);
    - chapter 8: the fine-tune by hand (epochs of batches of 32 images, about ``transfer_steps``
      steps in all), one epoch of the trainer on 64 images, and, online only, a ResNet-18
      fine-tune at 224 pixels from ImageNet weights (batches of up to 50).
    """
    race = profile.race_subset or 50_000
    train = profile.train_subset or 50_000
    n8 = 4 * profile.transfer_labels
    batches = max(1, n8 // 32)  # a pass of the fine-tune by hand (its last batch dropped)
    by_hand = max(1, profile.transfer_steps // batches) * batches * 32
    return {
        "01_background": sum(2 * relative_cost(d) for d in profile.depths)
        * race
        * profile.race_epochs,
        "06_training": plain_work(profile) + train * profile.epochs,
        "07_trained_network": 0.0,
        "08_finetuning": by_hand + 64 + profile.imagenet_steps * min(50, n8) * imagenet_cost(),
    }
