"""Training: ``train`` runs the algorithm; ``train_step`` is one step of it.

>>> from resnet_lab.cifar10 import load_cifar10                        # doctest: +SKIP
>>> history = train(resnet20(), load_cifar10(), TrainConfig(epochs=30))  # doctest: +SKIP

``train`` reads as its steps: build the run (:func:`resnet_lab.run.build_run`: device, loaders,
optimiser, schedule), start or resume it (:mod:`resnet_lab.run`), then for every epoch train
(:func:`train_one_epoch`, which calls :func:`train_step` per batch), evaluate
(:func:`evaluate_epoch`) and save a checkpoint. With
``checkpoint_dir`` a checkpoint is written atomically after every epoch; ``resume=True``
continues from it, and an interrupted and resumed run ends with exactly the weights of an
uninterrupted one. Ctrl-C stops cleanly and returns the History so far. A NaN or infinite loss
stops the run with an error naming the epoch and step.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same function trains with DistributedDataParallel:
every process takes an equal share of each batch (same global batch and learning rate as one
process), gradients are averaged, and rank 0 alone writes the History and the checkpoints.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from tqdm.auto import tqdm

from resnet_lab.checkpoints import (
    History,
    model_name,
)
from resnet_lab.cifar10 import CifarData
from resnet_lab.config import TrainConfig, low_res_epochs
from resnet_lab.distributed import Ranks, all_sum, barrier, distributed_setup
from resnet_lab.evaluation import evaluate
from resnet_lab.lab.runfolder import claim, run_folder
from resnet_lab.run import Run, build_run, new_history, resume_run, save_run

NAN_CHECK_STEPS = 50  # the loss is read on the host once per this many steps (and at epoch end)
EMA_BN_BATCHES = 10  # batches of 500 training images that set the EMA's batch-norm statistics


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices). Call it *before* building
    the model: the starting weights come from torch's generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, except that batch-norm layers whose parameters
    are frozen stay in eval mode: a frozen layer keeps its running
    statistics too (see :mod:`resnet_lab.finetune`)."""
    model.train()
    for m in model.modules():
        if (
            isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.weight is not None
            and not m.weight.requires_grad
        ):
            m.eval()


# ---------------------------------------------------------------------------- one step, one epoch


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor):
    """One step: forward, loss, backward, update, schedule, average.
    Returns the loss and the logits, detached and still on the device."""
    with run.autocast:  # bf16 or fp16 arithmetic where chosen
        logits = run.step_model(x)  # (B, classes)
        loss = run.criterion(logits.float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()  # scaled for fp16, else as it is
    run.scaler.step(run.optimizer)  # the update w <- w - lr * (grad + ...)
    run.scaler.update()
    run.scheduler.step()  # the learning rate of the next step
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return loss.detach(), logits.detach()


class _EpochSums:
    """Loss and accuracy of an epoch, summed on the device so the loop never waits for it; the
    first non-finite loss is remembered there too, so the error still names its step."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.steps = torch.zeros((), device=device, dtype=torch.long)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.steps += 1
        bad = (self.first_bad < 0) & ~torch.isfinite(loss)
        self.first_bad = torch.where(bad, self.steps, self.first_bad)
        self.loss += loss * len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)

    def check_finite(
        self, epoch: int, lr: float
    ) -> None:  # the one place the loop reads the device
        bad = int(self.first_bad)
        if bad >= 0:
            raise FloatingPointError(
                f"loss became NaN or infinite at epoch {epoch + 1}, step {bad} "
                f"(lr {lr:.4g}): lower TrainConfig.lr or add warmup"
            )

    def totals(self, ranks: Ranks) -> dict:
        seen = torch.tensor(float(self.seen), device=self.loss.device)
        loss, correct, n = all_sum(
            torch.stack([self.loss.float(), self.correct.float(), seen]), ranks
        )
        return {
            "train_loss": (loss / n).item(),
            "train_acc": (correct / n).item(),
            "images": int(n.item()),
        }


def _my_share(ranks: Ranks, x: torch.Tensor, y: torch.Tensor):
    """This process's equal share of the global batch under torchrun; all of it otherwise."""
    if ranks.world == 1:
        return x, y
    share = len(y) // ranks.world
    part = slice(ranks.rank * share, (ranks.rank + 1) * share)
    return x[part], y[part]


def train_one_epoch(run: Run, epoch: int, bar=None) -> dict[str, float]:
    """One pass over the training set, :func:`train_step` per batch. Returns the epoch's
    training loss and accuracy, its images and seconds."""
    loader, cfg = run.train_loader, run.cfg
    loader.size = cfg.low_res if epoch < low_res_epochs(cfg) else loader.images.shape[-1]
    loader.set_epoch(epoch)
    set_train_mode(run.model)
    sums = _EpochSums(run.device)
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        x, y = _my_share(run.ranks, x, y)
        loss, logits = train_step(run, x, y)
        sums.add(loss, logits, y)
        if bar is not None:
            bar.update(1)
        if (step + 1) % NAN_CHECK_STEPS == 0:
            sums.check_finite(epoch, run.lr())
            if bar is not None:
                bar.set_postfix(epoch=f"{epoch + 1}", loss=f"{loss.item():.3f}")
    sums.check_finite(epoch, run.lr())
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {**sums.totals(run.ranks), "seconds": seconds}


def evaluate_epoch(run: Run, epoch: int) -> dict[str, float]:
    """Test loss and accuracy of the network as it stands: its average (TrainConfig.ema) when
    there is one, whose BN statistics are refit first, and after the last epoch the raw weights
    too. The refit after the last epoch makes the final model: it counts as training time."""
    kw = dict(tta=run.cfg.tta, tta_translate=run.cfg.tta_translate, precision=run.precision)
    net = run.step_model if run.ranks.world == 1 else run.model
    last = epoch + 1 == run.cfg.epochs
    out, refit = {}, 0.0
    t0 = time.perf_counter()
    if run.ema is not None:
        if last:
            out["test_loss_raw"], out["test_acc_raw"] = evaluate(net, run.test_loader, **kw)
        t1 = time.perf_counter()
        run.bn_loader.set_epoch(epoch)
        with run.autocast:
            update_bn(itertools.islice(run.bn_loader, EMA_BN_BATCHES), run.ema.module)
        refit = time.perf_counter() - t1 if last else 0.0
        net = run.ema.module
    out["test_loss"], out["test_acc"] = evaluate(net, run.test_loader, **kw)
    out["eval_seconds"] = time.perf_counter() - t0 - refit
    out["refit_seconds"] = refit
    return out


def epoch_record(run: Run, epoch: int, bar=None) -> dict:
    """Train one epoch, evaluate when due, and say so in one record of the History."""
    r = train_one_epoch(run, epoch, bar)
    record = {
        "epoch": epoch + 1,
        "train_loss": r["train_loss"],
        "train_acc": r["train_acc"],
        "test_loss": None,
        "test_acc": None,
        "lr": run.lr(),
        "seconds": r["seconds"],
        "images_per_sec": r["images"] / r["seconds"],
    }
    if (epoch + 1) % run.cfg.eval_every == 0 or epoch + 1 == run.cfg.epochs:
        tested = evaluate_epoch(run, epoch)
        record["seconds"] += tested.pop("refit_seconds")
        record.update(tested)
    return record


def _progress_bar(run: Run, start: int, progress: bool):
    if not (progress and run.ranks.is_main):
        return None
    steps = len(run.train_loader)
    return tqdm(
        total=run.cfg.epochs * steps, initial=start * steps, desc=model_name(run.model), unit="step"
    )


def _show(bar, record: dict, epochs: int) -> None:
    if bar is not None:
        acc = record["test_acc"]
        bar.set_postfix(
            epoch=f"{record['epoch']}/{epochs}",
            loss=f"{record['train_loss']:.3f}",
            test_acc="-" if acc is None else f"{100 * acc:.1f}%",
        )


def _stopped(run: Run, history: History) -> None:
    """After Ctrl-C: say what was kept, and from which epoch ``resume=True`` goes on."""
    history.meta["interrupted_after_epoch"] = len(history)
    if run.ranks.is_main:  # rank 0 wrote the checkpoint: it alone knows what it holds
        where = ""
        if run.checkpoint and run.saved_epochs:
            where = f"; resume=True continues from epoch {run.saved_epochs + 1}"
        elif run.checkpoint:
            where = "; no epoch of this run was saved"
        print(f"\nInterrupted: returning the {len(history)} finished epochs{where}.")


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
    """Train ``model`` on ``data``, testing it after every epoch (or
    every ``cfg.eval_every``); return the :class:`History`."""
    cfg = cfg or TrainConfig()
    folder = run_folder(checkpoint_dir, resume, overwrite)
    ranks = distributed_setup(cfg.device)
    with claim(folder, resume, overwrite, writer=ranks.is_main):
        run = build_run(model, data, cfg, ranks, folder)
        start, history = 0, new_history(run, data)
        if resume and run.checkpoint.is_file():
            start, history = resume_run(run, history.meta["data"])
        bar = _progress_bar(run, start, progress)
        try:
            for epoch in range(start, cfg.epochs):
                history.epochs.append(epoch_record(run, epoch, bar))
                _show(bar, history.final, cfg.epochs)
                save_run(run, history)
                barrier(ranks)
                if on_epoch is not None:
                    on_epoch(history)
        except KeyboardInterrupt:
            _stopped(run, history)
        finally:
            if bar is not None:
                bar.close()
        history.meta["train_seconds"] = history.train_seconds
        history.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        if not history.interrupted:  # the final meta, still under the lock
            save_run(run, history, checkpoint=False)
    return history
