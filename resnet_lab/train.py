"""Training: one config dataclass, one ``train`` function, a History you can save and plot.

>>> from resnet_lab.data import load_cifar10
>>> from resnet_lab.models import resnet20
>>> history = train(resnet20(), load_cifar10(), TrainConfig(epochs=30))   # doctest: +SKIP

``train`` writes a checkpoint at the end of every epoch (atomically: a temp file, then a rename)
when given ``checkpoint_dir``; ``resume=True`` continues from it, and on the CPU an interrupted
and resumed run ends with exactly the weights of an uninterrupted one. Ctrl-C stops cleanly and
returns the History so far. A NaN or infinite loss stops with an error naming epoch and step.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.data import CifarData, CifarLoader, atomic_save, pick_device

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"


@dataclass
class TrainConfig:
    """Everything that decides a training run. Change one field with ``dataclasses.replace``.

    The defaults are the paper's CIFAR-10 recipe (He et al. 2015 §4.2) except the length:
    SGD with momentum 0.9, lr 0.1 divided by 10 at 50% and 75% of training, weight decay 1e-4,
    batch 128.
    """

    epochs: int = 30  # passes over the training set
    batch_size: int = 128  # the paper's mini-batch size
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4  # applied to every parameter, as in the paper
    schedule: str = "paper"  # "paper": lr/10 at 50% and 75%; "onecycle": up then linearly to 0; "constant"
    warmup: float = 0.0  # epochs of linear warm-up from lr/10 ("paper") or from 0 ("onecycle")
    label_smoothing: float = 0.0  # 0.1 is common; Szegedy et al. 2016
    channels_last: bool = False  # NHWC memory layout: faster convolutions on CPUs and tensor cores
    compile: bool = False  # torch.compile the model (20-40 s to compile on a CPU, faster steps after)
    precision: str = "fp32"  # "fp32", "bf16" (CPU or GPU that supports it), "fp16" (CUDA only)
    seed: int = 0  # weights, shuffling and augmentation
    device: str = "auto"  # "auto": CUDA when present, else the CPU
    eval_every: int = 1  # evaluate on the test set every k epochs (and always after the last)
    tta: bool = False  # flip test-time augmentation in evaluation
    tta_translate: bool = False  # also 1-pixel translated views in evaluation (as in airbench)
    crop_pad: int = 4  # random-crop padding in pixels (0 turns cropping off)
    flip: bool = True  # random horizontal flips

    def __post_init__(self) -> None:
        if self.schedule not in ("paper", "onecycle", "constant"):
            raise ValueError(f"schedule must be 'paper', 'onecycle' or 'constant', got {self.schedule!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {self.precision!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs} and {self.batch_size}")


# ---------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch records plus ``meta`` (model, data, device, hardware, versions, config).

    Each record has ``epoch, train_loss, train_acc, test_loss, test_acc, lr, seconds,
    images_per_sec`` (test values are ``None`` for epochs that were not evaluated; ``seconds``
    is training time only, evaluation excluded). Saved as JSON ``{"meta": ..., "epochs": [...]}``.
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, key: str) -> list[Any]:
        """``history["test_acc"]``: that column, one value per epoch."""
        return [r.get(key) for r in self.epochs]

    @property
    def final(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}

    @property
    def train_seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.epochs))

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"meta": self.meta, "epochs": self.epochs}, indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        blob = json.loads(Path(path).read_text())
        if not isinstance(blob, dict) or "epochs" not in blob:
            raise ValueError(f"{path} is not a History JSON (expected keys 'meta' and 'epochs')")
        return cls(epochs=list(blob["epochs"]), meta=dict(blob.get("meta", {})))

    def summary(self) -> str:
        f = self.final
        acc = f.get("test_acc")
        acc_s = f"{100 * acc:.2f}%" if acc is not None else "n/a"
        return (
            f"{self.meta.get('model', '?')}: test accuracy {acc_s} after {len(self)} epochs, "
            f"{self.train_seconds / 60:.1f} min of training on {self.meta.get('hardware', '?')}"
        )


# ---------------------------------------------------------------------------- helpers


def hardware_name(device: torch.device) -> str:
    """A short human description of the device, for figure captions."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return False


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA GPU; use 'bf16' or 'fp32' on the CPU")
    if precision == "bf16" and not bf16_supported(device):
        raise ValueError(f"this {device.type} does not support bf16; use precision='fp32'")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def model_name(model: nn.Module) -> str:
    return getattr(model, "name", type(model).__name__)


def model_signature(model: nn.Module) -> list[list]:
    """Parameter and buffer names with shapes: what a checkpoint must match to load."""
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


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


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose state dict we save: the original one, if ``model`` was compiled."""
    return getattr(model, "_orig_mod", model)


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


# ---------------------------------------------------------------------------- checkpoints


class CheckpointMismatch(ValueError):
    """A checkpoint of another model or another run was offered."""


def save_checkpoint(path, model, optimizer, scheduler, epoch: int, cfg: TrainConfig, history: History, scaler=None):
    state = {
        "format": "resnet_lab.checkpoint/1",
        "model_name": model_name(unwrap(model)),
        "signature": model_signature(unwrap(model)),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "config": asdict(cfg),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": {"meta": history.meta, "epochs": history.epochs},
    }
    atomic_save(state, path)


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, map_location="cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``) and, given ``model``, load its weights.

    Refuses, with :class:`CheckpointMismatch`, a checkpoint of another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") not in ("resnet_lab.checkpoint/1", "resnet_lab.weights/1"):
        raise ValueError(f"{path} is not a resnet_lab checkpoint (saved by resnet_lab.train.train)")
    if model is not None:
        target = unwrap(model)
        if state["signature"] != model_signature(target):
            raise CheckpointMismatch(
                f"{path} holds a {state['model_name']} but the model is a {model_name(target)} "
                f"with different layers: build a {state['model_name']} to load it"
            )
        target.load_state_dict(state["model"])
    return state


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Keep only what inference needs from a training checkpoint: the weights, the model's
    name and signature, and the run's History (no optimiser state). Loads with
    :func:`load_checkpoint` like a checkpoint."""
    state = load_checkpoint(checkpoint)
    slim = {k: state[k] for k in ("model_name", "signature", "model", "epoch", "config", "history")}
    slim["format"] = "resnet_lab.weights/1"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(slim, out)
    return out


# ---------------------------------------------------------------------------- train


def train(
    model: nn.Module,
    data: CifarData,
    cfg: TrainConfig | None = None,
    *,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    on_epoch: Callable[[History], None] | None = None,
) -> History:
    """Train ``model`` on ``data.train_*`` and evaluate on ``data.test_*`` every epoch.

    Returns a :class:`History`. With ``checkpoint_dir`` a checkpoint and the History JSON are
    written there after every epoch; ``resume=True`` continues from that checkpoint.
    ``on_epoch(history)`` is called after every epoch (live plots use it).
    """
    cfg = cfg or TrainConfig()
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    base = model

    train_loader = CifarLoader(
        data.train_images, data.train_labels, cfg.batch_size, train=True, device=device,
        seed=cfg.seed, crop_pad=cfg.crop_pad, flip=cfg.flip, channels_last=cfg.channels_last,
    )
    test_loader = CifarLoader(
        data.test_images, data.test_labels, 1000, train=False, device=device,
        channels_last=cfg.channels_last,
    )
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the training set ({len(data.train_labels)} images)"
        )
    total_steps = cfg.epochs * steps_per_epoch

    optimizer = torch.optim.SGD(
        base.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch)
    )
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    autocast = autocast_context(device, cfg.precision)  # validates precision for the device

    history = History(
        meta={
            "model": model_name(base),
            "parameters": sum(p.numel() for p in base.parameters()),
            "data": data.describe() if hasattr(data, "describe") else str(data),
            "device": str(device),
            "hardware": hardware_name(device),
            "torch": str(torch.__version__),
            "git_commit": git_commit(),
            "config": asdict(cfg),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "seconds_note": "per-epoch seconds count training only; evaluation is excluded",
        }
    )
    start_epoch = 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume:
        if ckpt_path is None:
            raise ValueError("resume=True needs checkpoint_dir")
        if ckpt_path.is_file():
            state = load_checkpoint(ckpt_path, base, map_location=device)
            saved = {k: v for k, v in state["config"].items() if k != "epochs"}
            ours = {k: v for k, v in asdict(cfg).items() if k != "epochs"}
            changed = {k: (saved.get(k), v) for k, v in ours.items() if saved.get(k) != v and k not in ("device",)}
            if changed:
                raise CheckpointMismatch(
                    f"{ckpt_path} was trained with other settings {changed} (saved, now): "
                    "resume with the same TrainConfig, or use a new checkpoint_dir"
                )
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"])
            if torch.cuda.is_available() and state.get("cuda_rng"):
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            history = History(epochs=list(state["history"]["epochs"]), meta=dict(state["history"]["meta"]))
            history.meta.setdefault("resumed_at_epochs", []).append(state["epoch"])
            start_epoch = state["epoch"]

    step_model = torch.compile(base) if cfg.compile else base
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, desc=model_name(base), unit="step")
    interrupted = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            step_model.train()
            train_loader.set_epoch(epoch)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            t0 = time.perf_counter()
            for step, (x, y) in enumerate(train_loader):
                with autocast:
                    logits = step_model(x)
                    loss = criterion(logits.float(), y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                        f"(lr {scheduler.get_last_lr()[0]:.4g}): lower TrainConfig.lr or add warmup"
                    )
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                scheduler.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if bar is not None:
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{loss.item():.3f}")
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            record = {
                "epoch": epoch + 1,
                "train_loss": loss_sum.item() / seen,
                "train_acc": correct.item() / seen,
                "test_loss": None,
                "test_acc": None,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": seconds,
                "images_per_sec": seen / seconds,
            }
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                t1 = time.perf_counter()
                record["test_loss"], record["test_acc"] = evaluate(
                    step_model, test_loader, tta=cfg.tta, tta_translate=cfg.tta_translate, precision=cfg.precision
                )
                record["eval_seconds"] = time.perf_counter() - t1
            history.epochs.append(record)
            if bar is not None:
                acc = record["test_acc"]
                bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{record['train_loss']:.3f}",
                                test_acc="-" if acc is None else f"{100 * acc:.1f}%")
            if ckpt_path is not None:
                ckpt_path.parent.mkdir(parents=True, exist_ok=True)
                save_checkpoint(ckpt_path, base, optimizer, scheduler, epoch + 1, cfg, history, scaler)
                history.save(ckpt_path.parent / HISTORY_NAME)
            if on_epoch is not None:
                on_epoch(history)
    except KeyboardInterrupt:
        interrupted = True
        history.meta["interrupted_after_epoch"] = len(history.epochs)
        where = f"; resume=True continues from epoch {len(history.epochs) + 1}" if ckpt_path else ""
        print(f"\nInterrupted: returning the {len(history.epochs)} finished epochs{where}.")
    finally:
        if bar is not None:
            bar.close()
    history.meta["train_seconds"] = history.train_seconds
    history.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if ckpt_path is not None and not interrupted:
        history.save(ckpt_path.parent / HISTORY_NAME)
    return history
