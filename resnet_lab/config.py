"""What decides a training run: :class:`TrainConfig`, its rules, and its learning-rate schedule.

>>> cfg = TrainConfig(epochs=30)                  # the paper's recipe, shorter
>>> fast = dataclasses.replace(cfg, lr=0.2)       # doctest: +SKIP

Every field is checked when a config is made, so a bad setting fails at once with a line that
names the field and what it must be, before any data is read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any


def is_int(v: Any) -> bool:
    """An integer, and not a bool (``True`` is an ``int`` in Python)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    """A finite int or float, and not a bool."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, int) or math.isfinite(v)


def _choice(*allowed: Any) -> Callable[[Any], bool]:
    return lambda v: v in allowed


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _scales(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and is_real(s) and s >= 0 for k, s in v.items()
    )


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")

# field -> (check, what it must be); every field is validated when a TrainConfig is made
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "lr": (lambda v: is_real(v) and v > 0, "a positive number"),
    "momentum": (lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "nesterov": (_flag, "true or false"),
    "weight_decay": (lambda v: is_real(v) and v >= 0, "a number >= 0"),
    "optimizer": (_choice("sgd", "adam", "adamw"), "'sgd', 'adam' or 'adamw'"),
    "schedule": (_choice("paper", "onecycle", "constant"), "'paper', 'onecycle' or 'constant'"),
    "warmup": (lambda v: is_real(v) and v >= 0, "a number of epochs >= 0"),
    "label_smoothing": (lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "channels_last": (lambda v: _flag(v) or v == "auto", "true, false or 'auto'"),
    "compile": (
        lambda v: _flag(v) or v in COMPILE_MODES,
        "true, false, 'reduce-overhead' or 'max-autotune'",
    ),
    "precision": (_choice("auto", "fp32", "bf16", "fp16"), "'auto', 'fp32', 'bf16' or 'fp16'"),
    "seed": (lambda v: is_int(v) and 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    "device": (
        lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None,
        "'auto', 'cpu', 'cuda', 'cuda:N' (N a number) or 'mps'",
    ),
    "eval_every": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "tta": (_flag, "true or false"),
    "tta_translate": (_flag, "true or false"),
    "crop_pad": (lambda v: is_int(v) and 0 <= v <= 16, "an integer from 0 to 16"),
    "flip": (lambda v: _flag(v) or v == "alternate", "true, false or 'alternate'"),
    "ema": (lambda v: is_real(v) and 0 <= v < 1, "a decay in [0, 1) (0: off)"),
    "bn_bias_lr": (lambda v: is_real(v) and v > 0, "a positive multiplier"),
    "bn_weight_decay": (_flag, "true or false"),
    "low_res": (
        lambda v: is_int(v) and (v == 0 or 8 <= v <= 32),
        "0 (off) or a side from 8 to 32 pixels",
    ),
    "low_res_fraction": (lambda v: is_real(v) and 0 < v <= 1, "a fraction in (0, 1]"),
    "lr_scales": (_scales, "a mapping of part names to learning-rate multipliers >= 0"),
}


@dataclass
class TrainConfig:
    """Everything that decides a training run. Change one field
    with ``dataclasses.replace``.

    The defaults are the paper's CIFAR-10 recipe (He et al. 2015,
    §4.2) except the length: SGD with momentum 0.9, lr 0.1 divided
    by 10 at 50% and 75% of training, weight decay 1e-4, batch 128.
    Speed settings default to "auto": the fastest arithmetic the
    hardware has.
    """

    epochs: int = 30  # passes over the training set
    batch_size: int = 128  # the global batch, under torchrun
    lr: float = 0.1  # the peak learning rate
    momentum: float = 0.9  # SGD's (Adam: its beta1 stays 0.9)
    nesterov: bool = False
    weight_decay: float = 1e-4  # on every parameter, as in the paper
    # "sgd" (the paper), "adam" (the article: lr 1e-3) or "adamw"
    optimizer: str = "sgd"
    # "paper": lr/10 at 50% and 75%; "onecycle": up, then down
    # linearly to 0; "constant"
    schedule: str = "paper"
    # epochs of warm-up: held at lr/10 ("paper"); a linear ramp
    # ("onecycle"): over W steps, step 0 at lr/W, step W - 1 at lr
    warmup: float = 0.0
    label_smoothing: float = 0.0  # 0.1 is common (Szegedy et al. 2016)
    # NHWC memory layout; "auto": on CPUs and CUDA GPUs
    channels_last: bool | str = "auto"
    # torch.compile; or a mode: "reduce-overhead" (CUDA graphs)
    compile: bool | str = False
    # "auto": bf16 where fast, else fp16 + GradScaler on CUDA, else fp32
    precision: str = "auto"
    # the weights (built after seed_everything), order, augmentation
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when present, else the CPU
    eval_every: int = 1  # test every k epochs, and after the last
    tta: bool = False  # test-time augmentation: average with the mirror
    tta_translate: bool = False  # and 1-pixel shifts (as airbench)
    crop_pad: int = 4  # random-crop padding in pixels (0: no crops)
    # random horizontal flips; "alternate": alternating (airbench)
    flip: bool | str = True
    # Fast-training techniques (the speed run), all off by default.
    # An average of the weights (decay per step), which is evaluated:
    ema: float = 0.0
    # BN biases at lr x this (weight decay / this: the same per step)
    bn_bias_lr: float = 1.0
    # False: no weight decay on BN's scale and shift (Goyal et al.)
    bn_weight_decay: bool = True
    # progressive resizing: the first low_res_fraction of the epochs
    # at low_res x low_res pixels (0: off)
    low_res: int = 0
    low_res_fraction: float = 0.5
    # fine-tuning: {"backbone": 0.1} trains all but the head at lr/10
    lr_scales: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            check, what = RULES[f.name]
            value = getattr(self, f.name)
            if not check(value):
                raise ValueError(f"TrainConfig.{f.name} must be {what}, got {value!r}")


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step`` (0-based)."""
    warm = cfg.warmup * steps_per_epoch
    if cfg.schedule == "onecycle":
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1.0, total_steps - warm))
    if step < warm:  # the paper warms ResNet-110 up at lr 0.01 ("paper") before going to 0.1
        return 0.1
    if cfg.schedule == "constant":
        return 1.0
    frac = step / total_steps
    return 1.0 if frac < 0.5 else 0.1 if frac < 0.75 else 0.01


def low_res_epochs(cfg: TrainConfig) -> int:
    """How many epochs, from the first, train at ``cfg.low_res`` pixels (progressive resizing)."""
    return round(cfg.low_res_fraction * cfg.epochs) if cfg.low_res else 0
