"""Training: one config dataclass, one ``train`` function, a History you can save and plot.

>>> from resnet_lab.cifar10 import load_cifar10
>>> from resnet_lab.models import resnet20
>>> history = train(resnet20(), load_cifar10(), TrainConfig(epochs=30))   # doctest: +SKIP

``train`` reads like the algorithm: set up (device, precision, loaders, optimiser), resume if
asked, then for every epoch :func:`train_one_epoch`, :func:`evaluate` and a checkpoint. With
``checkpoint_dir`` a checkpoint is written atomically after every epoch; ``resume=True``
continues from it, and on the CPU an interrupted and resumed run ends with exactly the weights of
an uninterrupted one. Ctrl-C stops cleanly and returns the History so far. A NaN or infinite
loss stops the run with an error naming the epoch and step.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same function trains with DistributedDataParallel:
every process takes an equal share of each batch (same global batch and learning rate as one
process), gradients are averaged, and rank 0 alone writes the History and the checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.checkpoints import (  # noqa: F401  (re-exported: chapters import them from here)
    CHECKPOINT_NAME,
    HISTORY_NAME,
    CheckpointMismatch,
    History,
    RunExistsError,
    check_writable,
    export_weights,
    load_checkpoint,
    model_name,
    model_signature,
    save_checkpoint,
    unwrap,
)
from resnet_lab.cifar10 import CifarData
from resnet_lab.device import autocast_context, hardware_name, pick_device, resolve_channels_last, resolve_precision
from resnet_lab.distributed import Ranks, all_sum, barrier, distributed_setup, global_batchnorm
from resnet_lab.loader import CifarLoader
from resnet_lab.runlock import RunLock

NAN_CHECK_STEPS = 50  # the loss is read on the host once per this many steps (and at epoch end)


def _choice(*allowed):
    return lambda v: v in allowed


# field -> (check, what it must be); every field is validated when a TrainConfig is made
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "lr": (lambda v: _is_real(v) and v > 0, "a positive number"),
    "momentum": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "nesterov": (lambda v: isinstance(v, bool), "true or false"),
    "weight_decay": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "optimizer": (_choice("sgd", "adam", "adamw"), "'sgd', 'adam' or 'adamw'"),
    "schedule": (_choice("paper", "onecycle", "constant"), "'paper', 'onecycle' or 'constant'"),
    "warmup": (lambda v: _is_real(v) and v >= 0, "a number of epochs >= 0"),
    "label_smoothing": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "channels_last": (lambda v: isinstance(v, bool) or v == "auto", "true, false or 'auto'"),
    "compile": (lambda v: isinstance(v, bool) or v in ("default", "reduce-overhead", "max-autotune"),
                "true, false, 'reduce-overhead' or 'max-autotune'"),
    "precision": (_choice("auto", "fp32", "bf16", "fp16"), "'auto', 'fp32', 'bf16' or 'fp16'"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    "device": (lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None,
               "'auto', 'cpu', 'cuda', 'cuda:N' (N a number) or 'mps'"),
    "eval_every": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "tta": (lambda v: isinstance(v, bool), "true or false"),
    "tta_translate": (lambda v: isinstance(v, bool), "true or false"),
    "crop_pad": (lambda v: _is_int(v) and 0 <= v <= 16, "an integer from 0 to 16"),
    "flip": (lambda v: isinstance(v, bool) or v == "alternate", "true, false or 'alternate'"),
    "ema": (lambda v: _is_real(v) and 0 <= v < 1, "a decay in [0, 1) (0: off)"),
    "bn_bias_lr": (lambda v: _is_real(v) and v > 0, "a positive multiplier"),
    "bn_weight_decay": (lambda v: isinstance(v, bool), "true or false"),
    "low_res": (lambda v: _is_int(v) and (v == 0 or 8 <= v <= 32), "0 (off) or a side from 8 to 32 pixels"),
    "low_res_fraction": (lambda v: _is_real(v) and 0 < v <= 1, "a fraction in (0, 1]"),
    "lr_scales": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_real(s) and s >= 0
                                                        for k, s in v.items()),
                  "a mapping of part names to learning-rate multipliers >= 0"),
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


@dataclass
class TrainConfig:
    """Everything that decides a training run. Change one field with ``dataclasses.replace``.

    The defaults are the paper's CIFAR-10 recipe (He et al. 2015 §4.2) except the length:
    SGD with momentum 0.9, lr 0.1 divided by 10 at 50% and 75% of training, weight decay 1e-4,
    batch 128. Speed settings default to "auto": the fastest arithmetic the hardware has.
    """

    epochs: int = 30  # passes over the training set
    batch_size: int = 128  # the paper's mini-batch size (the global batch, under torchrun)
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum (Adam: its beta1 stays 0.9)
    nesterov: bool = False
    weight_decay: float = 1e-4  # applied to every parameter, as in the paper
    optimizer: str = "sgd"  # "sgd" (the paper), "adam" (the article: Adam, lr 1e-3) or "adamw"
    schedule: str = "paper"  # "paper": lr/10 at 50% and 75%; "onecycle": up then linearly to 0; "constant"
    warmup: float = 0.0  # epochs of linear warm-up from lr/10 ("paper") or from 0 ("onecycle")
    label_smoothing: float = 0.0  # 0.1 is common; Szegedy et al. 2016
    channels_last: bool | str = "auto"  # NHWC memory layout; "auto": on CPUs and CUDA GPUs
    compile: bool | str = False  # torch.compile (20-40 s on a CPU); or a mode: "reduce-overhead" (CUDA graphs)
    precision: str = "auto"  # "auto": bf16 where supported, else fp16 + GradScaler on CUDA, else fp32
    seed: int = 0  # weights (when the model is built after seed_everything), shuffling, augmentation
    device: str = "auto"  # "auto": CUDA when present, else the CPU
    eval_every: int = 1  # evaluate on the test set every k epochs (and always after the last)
    tta: bool = False  # flip test-time augmentation in evaluation
    tta_translate: bool = False  # also 1-pixel translated views in evaluation (as in airbench)
    crop_pad: int = 4  # random-crop padding in pixels (0 turns cropping off)
    flip: bool | str = True  # random horizontal flips; "alternate": alternating flips (airbench)
    # fast-training techniques (the speed run, experiments.py's speedrun/ sweep), all off by default
    ema: float = 0.0  # decay per step of an exponential moving average of the weights, which is evaluated
    bn_bias_lr: float = 1.0  # BN biases train at lr x this (and weight decay / this: the same decay per step)
    bn_weight_decay: bool = True  # False: no weight decay on BN's scale and shift (Goyal et al. 2017)
    low_res: int = 0  # progressive resizing: the first low_res_fraction of epochs at low_res x low_res pixels
    low_res_fraction: float = 0.5
    lr_scales: dict = field(default_factory=dict)  # fine-tuning: {"backbone": 0.1} trains all but the head at lr/10

    def __post_init__(self) -> None:
        for f in fields(self):
            check, what = _RULES[f.name]
            value = getattr(self, f.name)
            if not check(value):
                raise ValueError(f"TrainConfig.{f.name} must be {what}, got {value!r}")


# ---------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices). Call it *before* building
    the model: the starting weights come from torch's generator."""
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def git_commit() -> str | None:
    """The commit of the code that runs, with ``+changes`` when the package's files differ from it."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        if commit and git("status", "--porcelain", "--untracked-files=no", "--", "."):
            commit += "+changes"
        return commit or None
    except (OSError, subprocess.SubprocessError):
        return None


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


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, except that batch-norm layers whose parameters are frozen stay in eval
    mode: a frozen layer keeps its running statistics too (see :mod:`resnet_lab.finetune`)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: trainable parameters only, one group per learning
    rate. ``cfg.lr_scales`` maps part names of :func:`~resnet_lab.models.model_parts`
    (``"stem"``, ``"layer2"``, ``"head"``, or ``"backbone"`` for all but the head) to multipliers of
    ``cfg.lr``; a part's own entry wins over ``"backbone"``; unnamed parts get 1. Batch-norm
    biases are further multiplied by ``cfg.bn_bias_lr``, their weight decay divided by it; with
    ``cfg.bn_weight_decay=False`` no batch-norm parameter is decayed."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters: unfreeze at least one part")
    if not cfg.lr_scales and cfg.bn_bias_lr == 1 and cfg.bn_weight_decay:
        return [{"params": [p for _, p in trainable]}]
    part_of: dict[str, str] = {}
    if cfg.lr_scales:
        from resnet_lab.finetune import model_parts, parameter_parts

        known = set(model_parts(model)) | {"backbone"}
        unknown = sorted(set(cfg.lr_scales) - known)
        if unknown:
            raise ValueError(f"TrainConfig.lr_scales names unknown parts {unknown}; this model's parts are {sorted(known)}")
        part_of = parameter_parts(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bn_biases = {id(m.bias) for m in norms if m.bias is not None}
    bn_params = {id(p) for m in norms for p in m.parameters(recurse=False)}
    groups: dict[tuple[float, float], list] = defaultdict(list)
    for name, p in trainable:
        part = part_of.get(name)
        default = cfg.lr_scales.get("backbone", 1.0) if part != "head" else 1.0
        scale, decay = float(cfg.lr_scales.get(part, default)), cfg.weight_decay
        if id(p) in bn_biases:
            scale, decay = scale * cfg.bn_bias_lr, decay / cfg.bn_bias_lr
        if id(p) in bn_params and not cfg.bn_weight_decay:
            decay = 0.0
        groups[scale, decay].append(p)
    return [{"params": ps, "lr": cfg.lr * scale, "lr_scale": scale, "weight_decay": decay}
            for (scale, decay), ps in groups.items()]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    adam = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------- evaluation


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate images by (dy, dx) pixels, filling with zeros (the padding value used in training)."""
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def tta_logits(model: nn.Module, x: torch.Tensor, *, flip: bool = True, translate: bool = False) -> torch.Tensor:
    """Logits averaged over test-time views: the image and its mirror image (``flip``), and with
    ``translate`` also both shifted one pixel up-left and down-right, weighted as airbench does
    (Jordan 2024): half on the untranslated views, a quarter on each translation."""

    def views(img):
        out = model(img).float()
        return 0.5 * (out + model(img.flip(3)).float()) if flip else out

    logits = views(x)
    if translate:
        logits = 0.5 * logits + 0.25 * (views(_shift(x, -1, -1)) + views(_shift(x, 1, 1)))
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: CifarLoader,
    *,
    tta: bool = False,
    tta_translate: bool = False,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (in eval mode).

    ``tta=True`` averages the logits of each image and its mirror image; ``tta_translate``
    adds 1-pixel translations (see :func:`tta_logits`).
    """
    was_training = model.training
    model.eval()
    device = loader.device
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    try:
        with autocast_context(device, precision):
            for x, y in loader:
                logits = tta_logits(model, x, flip=tta, translate=tta_translate)
                total_loss += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
                n += len(y)
    finally:
        model.train(was_training)
    return total_loss.item() / max(n, 1), correct.item() / max(n, 1)


@torch.no_grad()
def predict(model: nn.Module, loader: CifarLoader, *, tta: bool = False) -> torch.Tensor:
    """Logits for every image of ``loader`` in order, on the CPU: (N, num_classes)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([tta_logits(model, x, flip=tta).cpu() for x, _ in loader])
    finally:
        model.train(was_training)


def low_res_epochs(cfg: TrainConfig) -> int:
    """How many epochs, from the first, train at ``cfg.low_res`` pixels (progressive resizing)."""
    return round(cfg.low_res_fraction * cfg.epochs) if cfg.low_res else 0


EMA_BN_BATCHES = 10  # batches of 500 training images that set the EMA's batch-norm statistics


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, loader: CifarLoader, autocast=contextlib.nullcontext(),
                            batches: int | None = None) -> None:
    """Set every batch-norm layer's running statistics to the average over ``batches`` batches
    of ``loader``, computed with ``model``'s own weights. An average of weights (an EMA, SWA) is a
    network that never ran, so statistics collected along the way do not fit it (Izmailov et al.
    2018 recompute them for SWA, as ``torch.optim.swa_utils.update_bn`` does)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    try:
        with autocast:
            for i, (x, _) in enumerate(loader):
                if batches is not None and i >= batches:
                    break
                model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


# ---------------------------------------------------------------------------- one epoch


@dataclass
class _Step:
    """What one training step needs, built once by :func:`train`."""

    model: nn.Module  # what is called (compiled and/or DDP-wrapped)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    autocast: Any
    criterion: nn.Module
    ranks: Ranks
    ema: Any = None  # torch.optim.swa_utils.AveragedModel of the weights (TrainConfig.ema)


def train_one_epoch(s: _Step, loader: CifarLoader, epoch: int, bar=None) -> dict[str, float]:
    """One pass over ``loader``: forward, loss, backward, step, per batch. Returns the epoch's
    training loss, accuracy, images and seconds.

    Nothing in the loop waits for the device: loss and accuracy are summed on it, and the loss
    is checked for NaN/inf on the host only every ``NAN_CHECK_STEPS`` steps and at the end (the
    first bad step is remembered on the device, so the error still names it exactly).
    """
    device = loader.device
    set_train_mode(unwrap(s.model))
    loader.set_epoch(epoch)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    step_no = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    world, rank = s.ranks.world, s.ranks.rank

    def check_finite() -> None:  # the one place the loop reads the device
        bad = int(first_bad)
        if bad >= 0:
            raise FloatingPointError(
                f"loss became NaN or infinite at epoch {epoch + 1}, step {bad} "
                f"(lr {s.scheduler.get_last_lr()[0]:.4g}): lower TrainConfig.lr or add warmup"
            )

    t0 = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if world > 1:  # this process's share of the global batch
            share = len(y) // world
            x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        with s.autocast:
            logits = s.model(x)
            loss = s.criterion(logits.float(), y)
        s.optimizer.zero_grad(set_to_none=True)
        if s.scaler is not None:
            s.scaler.scale(loss).backward()
            s.scaler.step(s.optimizer)
            s.scaler.update()
        else:
            loss.backward()
            s.optimizer.step()
        s.scheduler.step()
        if s.ema is not None:
            s.ema.update_parameters(unwrap(s.model))
        loss = loss.detach()
        step_no += 1
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step_no, first_bad)
        loss_sum += loss * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update(1)
        if (step + 1) % NAN_CHECK_STEPS == 0:
            check_finite()
            if bar is not None:
                bar.set_postfix(epoch=f"{epoch + 1}", loss=f"{loss.item():.3f}")
    check_finite()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    totals = all_sum(torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(seen), device=device)]),
                      s.ranks)
    return {"train_loss": (totals[0] / totals[2]).item(), "train_acc": (totals[1] / totals[2]).item(),
            "images": int(totals[2].item()), "seconds": seconds}


# ---------------------------------------------------------------------------- train


def _resume(ckpt_path: Path, model: nn.Module, cfg: TrainConfig, data_desc: str, s: _Step, device) -> tuple[int, History]:
    """Load the checkpoint in ``ckpt_path`` into the model, optimiser, scheduler and RNG, after
    checking that it belongs to this network, this recipe and this data."""
    state = load_checkpoint(ckpt_path, model, map_location=device)
    defaults = asdict(TrainConfig())  # fields added since an older checkpoint was written
    saved = {k: state["config"].get(k, defaults[k]) for k in defaults if k not in ("epochs", "device")}
    ours = {k: v for k, v in asdict(cfg).items() if k not in ("epochs", "device")}
    changed = {k: (saved[k], v) for k, v in ours.items() if saved[k] != v}
    if changed:
        raise CheckpointMismatch(
            f"{ckpt_path} was trained with other settings {changed} (saved, now): "
            "resume with the same TrainConfig, or use a new checkpoint_dir"
        )
    saved_data = state.get("data") or state["history"]["meta"].get("data")
    if saved_data is not None and not _same_data(saved_data, data_desc):
        raise CheckpointMismatch(
            f"{ckpt_path} was trained on other data: saved '{saved_data}', now '{data_desc}'. "
            "Resume with the same data (--subset, --test-subset, --data), or use a new checkpoint_dir"
        )
    saved_epochs = state["config"].get("epochs", cfg.epochs)
    if saved_epochs != cfg.epochs and (cfg.schedule != "constant" or cfg.low_res):
        raise CheckpointMismatch(
            f"{ckpt_path} is a {saved_epochs}-epoch run whose learning-rate schedule ('{cfg.schedule}'"
            f"{', with progressive resizing' if cfg.low_res else ''}) is laid out over those {saved_epochs} "
            f"epochs; resuming it for {cfg.epochs} would restart the schedule part way. Resume with "
            f"--epochs {saved_epochs}, or train {cfg.epochs} epochs from the start in another folder (--out)"
        )
    if state["epoch"] > cfg.epochs:
        raise CheckpointMismatch(f"{ckpt_path} holds {state['epoch']} finished epochs, more than the "
                                 f"{cfg.epochs} asked for: resume with --epochs {state['epoch']} or more")
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    if s.scaler is not None and state.get("scaler"):
        s.scaler.load_state_dict(state["scaler"])
    if s.ema is not None:
        s.ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["torch_rng"])
    if torch.cuda.is_available() and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    history = History(epochs=list(state["history"]["epochs"]), meta=dict(state["history"]["meta"]))
    history.meta.setdefault("resumed_at_epochs", []).append(state["epoch"])
    return state["epoch"], history


def _same_data(saved: str, ours: str) -> bool:
    """Whether two data descriptions name the same data. Descriptions written before they
    carried a content digest are compared without it (such checkpoints still resume)."""
    if saved == ours or "; digest " in saved:
        return saved == ours
    return re.sub(r"; digest [0-9a-f]+\)$", ")", ours) == saved


def _run_folder(checkpoint_dir, resume: bool, overwrite: bool) -> Path | None:
    """Check the run-folder arguments of :func:`train` before anything else is done."""
    if resume and overwrite:
        raise ValueError("resume and overwrite contradict each other: resume (--resume) continues the "
                         "run in the folder, overwrite (--overwrite) replaces it; choose one")
    if checkpoint_dir is None:
        if resume:
            raise ValueError("resume=True needs the run's folder: pass checkpoint_dir (--out)")
        return None
    if not str(checkpoint_dir).strip():
        raise ValueError("the run's folder (checkpoint_dir, --out) is empty: name one, e.g. runs/resnet20")
    folder = Path(checkpoint_dir)
    if folder.is_file() or folder.suffix in (".pt", ".pth", ".json"):
        raise ValueError(f"{folder} names a file, but checkpoint_dir (--out) is the run's folder, which "
                         f"will hold {CHECKPOINT_NAME} and {HISTORY_NAME}: give a folder, e.g. {folder.parent}")
    return folder


def _check_run_folder(folder: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to replace another run: a folder that holds one needs ``resume`` or ``overwrite``,
    and ``resume`` needs a checkpoint (a History alone is another run's record)."""
    if overwrite:
        return
    existing = [n for n in (CHECKPOINT_NAME, HISTORY_NAME) if (folder / n).exists()]
    if existing and not resume:
        raise RunExistsError(
            f"{folder} already holds a run ({', '.join(existing)}): resume it (resume=True, --resume), "
            "choose another folder (--out), or replace it (overwrite=True, --overwrite)"
        )
    if resume and existing == [HISTORY_NAME]:
        raise RunExistsError(
            f"{folder} holds a {HISTORY_NAME} but no {CHECKPOINT_NAME} to resume from (another run's "
            "record, or its checkpoint was removed): choose another folder (--out), or replace it (--overwrite)"
        )


def train(
    model: nn.Module,
    data: CifarData,
    cfg: TrainConfig | None = None,
    *,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch: Callable[[History], None] | None = None,
) -> History:
    """Train ``model`` on ``data.train_*`` and evaluate on ``data.test_*`` every epoch.

    Returns a :class:`History`. With ``checkpoint_dir`` a checkpoint and the History JSON are
    written there after every epoch; ``resume=True`` continues from that checkpoint (a folder
    without one starts afresh). A folder that already holds a run is refused unless ``resume``
    or ``overwrite`` is given, and a folder another process is training into is refused (see
    :mod:`resnet_lab.runlock`). ``on_epoch(history)`` is called after every epoch (live plots use it).
    """
    cfg = cfg or TrainConfig()
    folder = _run_folder(checkpoint_dir, resume, overwrite)
    ranks = distributed_setup(cfg.device)
    if folder is None or not ranks.is_main:  # rank 0 alone writes, so rank 0 alone holds the lock
        return _train(model, data, cfg, ranks, progress, folder, resume, on_epoch)
    with RunLock(check_writable(folder)):  # unwritable: fail now, not after an epoch of training
        _check_run_folder(folder, resume, overwrite)
        return _train(model, data, cfg, ranks, progress, folder, resume, on_epoch)


def _train(model, data, cfg, ranks, progress, folder, resume, on_epoch) -> History:
    device = pick_device(cfg.device)
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local)
    precision = resolve_precision(device, cfg.precision)
    channels_last = resolve_channels_last(device, cfg.channels_last)
    autocast = autocast_context(device, precision)  # validates precision for the device
    ckpt_path = folder / CHECKPOINT_NAME if folder is not None else None

    torch.manual_seed(cfg.seed)
    base = model.to(device)
    if channels_last:
        base = base.to(memory_format=torch.channels_last)
    train_loader = CifarLoader(
        data.train_images, data.train_labels, cfg.batch_size, train=True, device=device,
        seed=cfg.seed, crop_pad=cfg.crop_pad, flip=cfg.flip, channels_last=channels_last,
    )
    test_loader = CifarLoader(data.test_images, data.test_labels, 1000, train=False, device=device,
                              channels_last=channels_last)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the training set ({len(data.train_labels)} images)"
        )
    if cfg.batch_size % ranks.world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {ranks.world} processes")
    total_steps = cfg.epochs * steps_per_epoch

    optimizer = make_optimizer(base, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch)
    )
    step_model = base
    if ranks.world > 1:
        step_model = global_batchnorm(step_model, device)  # BN over the global batch, as in one process
        step_model = nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:  # with progressive resizing, one static graph per image size
        step_model = torch.compile(step_model, mode=None if cfg.compile in (True, "default") else cfg.compile,
                                   dynamic=False if cfg.low_res else None)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        # weights only: batch-norm statistics are recomputed for the averaged weights before each
        # evaluation (averaging them alongside the weights gave 61% instead of 89% at decay 0.999)
        ema = AveragedModel(base, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=False)
        bn_loader = CifarLoader(data.train_images, data.train_labels, 500, train=True, device=device,
                                seed=cfg.seed + 1, crop_pad=cfg.crop_pad, channels_last=channels_last,
                                drop_last=False)
    s = _Step(
        model=step_model, optimizer=optimizer, scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None, autocast=autocast,
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), ranks=ranks, ema=ema,
    )
    full_size, n_small = data.train_images.shape[-1], low_res_epochs(cfg)

    data_desc = data.describe() if hasattr(data, "describe") else str(data)
    history = History(meta={
        "model": model_name(base),
        "build": getattr(base, "build_spec", None),
        "parameters": sum(p.numel() for p in base.parameters()),
        "trainable_parameters": sum(p.numel() for p in base.parameters() if p.requires_grad),
        "data": data_desc,
        "classes": list(data.classes),
        "device": str(device),
        "hardware": hardware_name(device) + (f" x {ranks.world} processes" if ranks.world > 1 else ""),
        "precision": precision,
        "channels_last": channels_last,
        "torch": str(torch.__version__),
        "git_commit": git_commit(),
        "config": asdict(cfg),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds_note": "per-epoch seconds count training only; evaluation is excluded",
    })
    start_epoch = 0
    if resume and ckpt_path.is_file():
        start_epoch, history = _resume(ckpt_path, base, cfg, data_desc, s, device)
    saved_epochs = start_epoch  # what the checkpoint on disk holds, for the message after Ctrl-C

    bar = None
    if progress and ranks.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, desc=model_name(base), unit="step")
    interrupted = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            train_loader.size = cfg.low_res if epoch < n_small else full_size
            r = train_one_epoch(s, train_loader, epoch, bar)
            record = {
                "epoch": epoch + 1, "train_loss": r["train_loss"], "train_acc": r["train_acc"],
                "test_loss": None, "test_acc": None, "lr": optimizer.param_groups[0]["lr"],
                "seconds": r["seconds"], "images_per_sec": r["images"] / r["seconds"],
            }
            last = epoch + 1 == cfg.epochs
            if (epoch + 1) % cfg.eval_every == 0 or last:
                t1 = time.perf_counter()
                eval_model = step_model if ranks.world == 1 else base
                tta = dict(tta=cfg.tta, tta_translate=cfg.tta_translate, precision=precision)
                if ema is not None:  # the averaged weights are the model; at the end, the raw ones too
                    if last:
                        record["test_loss_raw"], record["test_acc_raw"] = evaluate(eval_model, test_loader, **tta)
                    t2 = time.perf_counter()
                    bn_loader.set_epoch(epoch)
                    recompute_bn_statistics(ema.module, bn_loader, autocast, EMA_BN_BATCHES)
                    if last:  # part of making the final model: training time, not evaluation
                        bn_seconds = time.perf_counter() - t2
                        record["seconds"] += bn_seconds
                        t1 += bn_seconds
                    eval_model = ema.module
                record["test_loss"], record["test_acc"] = evaluate(eval_model, test_loader, **tta)
                record["eval_seconds"] = time.perf_counter() - t1
            history.epochs.append(record)
            if bar is not None:
                acc = record["test_acc"]
                bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{record['train_loss']:.3f}",
                                test_acc="-" if acc is None else f"{100 * acc:.1f}%")
            if ckpt_path is not None and ranks.is_main:
                save_checkpoint(ckpt_path, base, optimizer, scheduler, epoch + 1, cfg, history, s.scaler,
                                ema=ema)
                saved_epochs = epoch + 1
                history.save(ckpt_path.parent / HISTORY_NAME)
            barrier(ranks)
            if on_epoch is not None:
                on_epoch(history)
    except KeyboardInterrupt:
        interrupted = True
        history.meta["interrupted_after_epoch"] = len(history.epochs)
        where = f"; resume=True continues from epoch {saved_epochs + 1}" if ckpt_path else ""
        print(f"\nInterrupted: returning the {len(history.epochs)} finished epochs{where}.")
    finally:
        if bar is not None:
            bar.close()
    history.meta["train_seconds"] = history.train_seconds
    history.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if ckpt_path is not None and not interrupted and ranks.is_main:
        history.save(ckpt_path.parent / HISTORY_NAME)
    return history
