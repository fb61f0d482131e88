"""One training run's state: built once, started or resumed, saved after every epoch.

:func:`build_run` places the model and makes everything a run needs (loaders, optimiser,
schedule, loss scaler, the average of the weights) into one :class:`Run`; :func:`new_history`
starts its History; :func:`resume_run` loads a checkpoint into it, after checking that the
checkpoint belongs to this network, this recipe and this data; :func:`save_run` writes the
checkpoint and the History atomically (rank 0 alone under ``torchrun``), and
:func:`finish_run` closes the History. :func:`resnet_lab.train.train` strings these together
around the epoch loop.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from resnet_lab.checkpoints import (
    CHECKPOINT_NAME,
    HISTORY_NAME,
    CheckpointMismatch,
    History,
    load_checkpoint,
    model_name,
    remove_dead_temps,
    save_checkpoint,
)
from resnet_lab.cifar10 import CifarData
from resnet_lab.config import TrainConfig, lr_factor
from resnet_lab.device import (
    autocast_context,
    hardware_name,
    pick_device,
    resolve_channels_last,
    resolve_precision,
)
from resnet_lab.distributed import Ranks, barrier, distributed_setup, global_batchnorm
from resnet_lab.loader import CifarLoader
from resnet_lab.models import count_params
from resnet_lab.optim import make_optimizer


@dataclass
class Run:
    """One training run, built once by :func:`build_run`."""

    cfg: TrainConfig
    model: nn.Module  # the network: its weights are saved, averaged, evaluated
    step_model: nn.Module  # what a step calls: ``model`` compiled and/or wrapped in DDP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler  # loss scaling for fp16 on CUDA; otherwise disabled, a no-op
    autocast: contextlib.AbstractContextManager
    criterion: nn.Module
    train_loader: CifarLoader
    test_loader: CifarLoader
    ranks: Ranks
    precision: str
    checkpoint: Path | None = None
    ema: AveragedModel | None = None  # the average of the weights (TrainConfig.ema)
    bn_loader: CifarLoader | None = None  # training images that refit the average's BN statistics
    saved_epochs: int = 0  # the epochs the checkpoint on disk holds

    @property
    def device(self) -> torch.device:
        return self.train_loader.device

    def lr(self) -> float:
        """The learning rate of the next step (the base rate: parts with a scale differ)."""
        return self.cfg.lr * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)


def build_run(
    model: nn.Module,
    data: CifarData,
    cfg: TrainConfig,
    ranks: Ranks | None = None,
    folder: str | os.PathLike | None = None,
) -> Run:
    """Place the model, make the loaders, the optimiser, the schedule and the EMA; with a
    ``folder`` for the checkpoint, make it, and remove what writers killed mid-write left there.
    ``ranks``: this process under ``torchrun`` (default: from the environment)."""
    ranks = ranks if ranks is not None else distributed_setup(cfg.device)
    device = pick_device(cfg.device)
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local)
    precision = resolve_precision(device, cfg.precision)
    channels_last = resolve_channels_last(device, cfg.channels_last)
    autocast = autocast_context(device, precision)  # validates precision for the device
    checkpoint = _checkpoint_path(folder, ranks)
    torch.manual_seed(cfg.seed)
    layout = torch.channels_last if channels_last else torch.preserve_format
    model = model.to(device, memory_format=layout)
    place = dict(device=device, channels_last=channels_last)
    train_loader, test_loader = _loaders(data, cfg, ranks, place)
    steps = len(train_loader)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, cfg.epochs * steps, steps)
    )
    run = Run(
        cfg=cfg,
        model=model,
        step_model=_step_model(model, cfg, ranks, device),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        autocast=autocast,
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        train_loader=train_loader,
        test_loader=test_loader,
        ranks=ranks,
        precision=precision,
        checkpoint=checkpoint,
    )
    if cfg.ema:  # weights only: BN statistics are refit for the averaged weights before a test
        run.ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=False
        )
        run.bn_loader = CifarLoader(
            data.train_images,
            data.train_labels,
            500,
            train=True,
            seed=cfg.seed + 1,
            crop_pad=cfg.crop_pad,
            drop_last=False,
            **place,
        )
    return run


def _checkpoint_path(folder: str | os.PathLike | None, ranks: Ranks) -> Path | None:
    """The checkpoint's path in ``folder``; the folder is made, and temporary files of writers
    that died mid-write (SIGKILL) are removed, by rank 0, which alone writes there."""
    if folder is None:
        return None
    folder = Path(folder)
    if ranks.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        remove_dead_temps(folder)
    return folder / CHECKPOINT_NAME


def _loaders(
    data: CifarData, cfg: TrainConfig, ranks: Ranks, place: dict
) -> tuple[CifarLoader, CifarLoader]:
    """The training loader (shuffled and augmented by the seed) and the test loader, on
    ``place``'s device and layout; a batch that no step can fill is refused."""
    train_loader = CifarLoader(
        data.train_images,
        data.train_labels,
        cfg.batch_size,
        train=True,
        seed=cfg.seed,
        crop_pad=cfg.crop_pad,
        flip=cfg.flip,
        **place,
    )
    if len(train_loader) == 0:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the training set "
            f"({len(data.train_labels)} images)"
        )
    if cfg.batch_size % ranks.world:
        raise ValueError(
            f"batch_size {cfg.batch_size} must be divisible by the {ranks.world} processes"
        )
    test_loader = CifarLoader(data.test_images, data.test_labels, 1000, train=False, **place)
    return train_loader, test_loader


def _step_model(
    model: nn.Module, cfg: TrainConfig, ranks: Ranks, device: torch.device
) -> nn.Module:
    """What a training step calls: the model, with BN over the global batch and DDP under
    torchrun, compiled if asked (one static graph per image size with progressive resizing)."""
    if ranks.world > 1:
        model = global_batchnorm(model, device)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        mode = None if cfg.compile in (True, "default") else cfg.compile
        model = torch.compile(model, mode=mode, dynamic=False if cfg.low_res else None)
    return model


# ---------------------------------------------------------------------------- start, resume, save


def new_history(run: Run, data: CifarData) -> History:
    """An empty History whose meta says what trains on what, where, with which code."""
    return History(
        meta={
            "model": model_name(run.model),
            "build": getattr(run.model, "build_spec", None),
            "parameters": count_params(run.model),
            "trainable_parameters": count_params(run.model, trainable_only=True),
            "data": data.describe(),
            "classes": list(data.classes),
            "device": str(run.device),
            "hardware": hardware_name(run.device)
            + (f" x {run.ranks.world} processes" if run.ranks.world > 1 else ""),
            "precision": run.precision,
            "channels_last": run.train_loader.channels_last,
            "torch": str(torch.__version__),
            "config": asdict(run.cfg),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "seconds_note": "per-epoch seconds count training only; evaluation is excluded",
        }
    )


def _check_resumable(path: Path, state: dict, cfg: TrainConfig, data_desc: str) -> None:
    """Refuse a checkpoint of another recipe, other data, or a schedule laid out over another
    length (a longer resume of the paper's schedule would restart it part way)."""
    defaults = asdict(TrainConfig())  # fields added since an older checkpoint was written
    saved = {
        k: state["config"].get(k, defaults[k]) for k in defaults if k not in ("epochs", "device")
    }
    ours = {k: v for k, v in asdict(cfg).items() if k not in ("epochs", "device")}
    changed = {k: (saved[k], v) for k, v in ours.items() if saved[k] != v}
    if changed:
        raise CheckpointMismatch(
            f"{path} was trained with other settings {changed} (saved, now): "
            "resume with the same TrainConfig, or use a new checkpoint_dir"
        )
    saved_data = state.get("data") or state["history"]["meta"].get("data")
    if saved_data is not None and not _same_data(saved_data, data_desc):
        raise CheckpointMismatch(
            f"{path} was trained on other data: saved '{saved_data}', now '{data_desc}'. Resume "
            "with the same data (--subset, --test-subset, --data), or use a new checkpoint_dir"
        )
    n = state["config"].get("epochs", cfg.epochs)
    if n != cfg.epochs and (cfg.schedule != "constant" or cfg.low_res):
        resizing = ", with progressive resizing" if cfg.low_res else ""
        raise CheckpointMismatch(
            f"{path} is a {n}-epoch run whose learning-rate schedule ('{cfg.schedule}'{resizing}) "
            f"is laid out over those {n} epochs; resuming it for {cfg.epochs} would restart the "
            f"schedule part way. Resume with --epochs {n}, or train {cfg.epochs} epochs from the "
            "start in another folder (--out)"
        )
    if state["epoch"] > cfg.epochs:
        raise CheckpointMismatch(
            f"{path} holds {state['epoch']} finished epochs, more than the "
            f"{cfg.epochs} asked for: resume with --epochs {state['epoch']} or more"
        )


def resume_run(run: Run, history: History) -> History:
    """Load the run's checkpoint into the model, optimiser, schedule, scaler, average and RNG,
    after checking that it belongs to this network, this recipe and this data (``history``,
    the new run's, says which). Returns the checkpoint's History, to be continued."""
    state = load_checkpoint(run.checkpoint, run.model, map_location=run.device)
    _check_resumable(run.checkpoint, state, run.cfg, history.meta["data"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["torch_rng"])
    if torch.cuda.is_available() and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    history = History(epochs=list(state["history"]["epochs"]), meta=dict(state["history"]["meta"]))
    history.meta.setdefault("resumed_at_epochs", []).append(state["epoch"])
    run.saved_epochs = state["epoch"]
    return history


def save_run(run: Run, history: History, checkpoint: bool = True) -> None:
    """The checkpoint (unless ``checkpoint=False``) and the History; rank 0 alone writes, and
    the others wait until the checkpoint is written."""
    if run.checkpoint is None:
        return
    if run.ranks.is_main and checkpoint:
        scaler = run.scaler if run.scaler.is_enabled() else None
        save_checkpoint(
            run.checkpoint,
            run.model,
            run.optimizer,
            run.scheduler,
            len(history),
            run.cfg,
            history,
            scaler,
            ema=run.ema,
        )
        run.saved_epochs = len(history)
    if run.ranks.is_main:
        history.save(run.checkpoint.parent / HISTORY_NAME)
    if checkpoint:
        barrier(run.ranks)
        run.saved_epochs = len(history)  # on every rank: rank 0 has written it


def finish_run(run: Run, history: History) -> History:
    """Close the History: its training seconds and end; a run that finished (not stopped by
    Ctrl-C) saves it once more with this final meta."""
    history.meta["train_seconds"] = history.train_seconds
    history.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if not history.interrupted:
        save_run(run, history, checkpoint=False)
    return history


def _same_data(saved: str, ours: str) -> bool:
    """Whether two data descriptions name the same data. Descriptions written before they
    carried a content digest are compared without it (such checkpoints still resume)."""
    if saved == ours or "; digest " in saved:
        return saved == ours
    return re.sub(r"; digest [0-9a-f]+\)$", ")", ours) == saved
