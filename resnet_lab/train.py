"""Training: ``train`` is the algorithm, ``train_step`` one step of it.

>>> history = train(resnet20(), load_cifar10(), TrainConfig(epochs=30))  # doctest: +SKIP

``train`` builds the run (:func:`resnet_lab.run.build_run`), then for every epoch trains
(:func:`train_one_epoch`, :func:`train_step` per batch), tests (:func:`evaluate_epoch`) and,
with ``checkpoint_dir``, saves a checkpoint atomically; ``resume=True`` continues from it, to
exactly the weights of an uninterrupted run. Ctrl-C returns the History so far; a NaN or
infinite loss stops the run with an error naming the epoch and step. Under ``torchrun`` every
process takes an equal share of each batch, DistributedDataParallel averages the gradients, and
rank 0 alone writes. Where a run may write, and one process per folder, are the lab's rules
(:mod:`resnet_lab.lab.runfolder`).
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

from resnet_lab.checkpoints import History, model_name
from resnet_lab.cifar10 import CifarData
from resnet_lab.config import TrainConfig, low_res_epochs
from resnet_lab.distributed import Ranks, all_sum
from resnet_lab.evaluation import evaluate
from resnet_lab.run import Run, build_run, finish_run, new_history, resume_run, save_run

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


# ---------------------------------------------------------------------------- the algorithm


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
    """Train ``model`` on ``data``, test it after every epoch
    (or every ``cfg.eval_every``), and return the History."""
    cfg = cfg or TrainConfig()
    run = build_run(model, data, cfg, folder=checkpoint_dir)
    history = new_history(run, data)
    if resume and run.checkpoint and run.checkpoint.is_file():
        history = resume_run(run, history)
    bar = progress_bar(run, len(history), progress)
    try:
        for epoch in range(len(history), cfg.epochs):
            record = train_one_epoch(run, epoch, bar)
            if is_test_epoch(cfg, epoch):
                evaluate_epoch(run, record)  # test loss and accuracy
            history.epochs.append(record)
            show(bar, record, cfg.epochs)
            save_run(run, history)  # the checkpoint
            if on_epoch is not None:
                on_epoch(history)
    except KeyboardInterrupt:
        stopped(run, history)
    finally:
        bar.close()
    return finish_run(run, history)


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor):
    """One step: forward, loss, backward, step, schedule.
    Returns the loss and the logits, detached, on the device."""
    with run.autocast:  # 16-bit arithmetic where it is fast
        logits = run.step_model(x)  # (B, classes)
        loss = run.criterion(logits.float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()  # scaled in fp16 only
    run.scaler.step(run.optimizer)  # w <- w - lr * (grad + ...)
    run.scaler.update()
    run.scheduler.step()  # the learning rate of the next step
    return loss.detach(), logits.detach()


def train_one_epoch(run: Run, epoch: int, bar: tqdm | None = None) -> dict:
    """One pass over the training set, :func:`train_step` per batch. Returns the epoch's
    record: training loss and accuracy, learning rate, seconds and images per second."""
    loader, cfg = run.train_loader, run.cfg
    loader.size = cfg.low_res if epoch < low_res_epochs(cfg) else loader.images.shape[-1]
    loader.set_epoch(epoch)
    set_train_mode(run.model)
    sums = _EpochSums(run.device)
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        x, y = _my_share(run.ranks, x, y)
        loss, logits = train_step(run, x, y)
        if run.ema is not None:  # the average of the weights (TrainConfig.ema)
            run.ema.update_parameters(run.model)
        sums.add(loss, logits, y)
        if bar is not None:
            bar.update(1)
        if (step + 1) % NAN_CHECK_STEPS == 0:
            sums.check_finite(epoch, run.lr())  # a host sync, so the loss is shown too
            if bar is not None and not bar.disable:
                bar.set_postfix(epoch=f"{epoch + 1}", loss=f"{loss.item():.3f}")
    sums.check_finite(epoch, run.lr())
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    loss, acc, images = sums.totals(run.ranks)
    return {
        "epoch": epoch + 1,
        "train_loss": loss,
        "train_acc": acc,
        "test_loss": None,
        "test_acc": None,
        "lr": run.lr(),
        "seconds": seconds,
        "images_per_sec": images / seconds,
    }


def is_test_epoch(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the network is tested after ``epoch`` (0-based): every ``cfg.eval_every``, and
    after the last."""
    return (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs


def evaluate_epoch(run: Run, record: dict) -> None:
    """Fill in the epoch's ``record`` with the test loss and accuracy of the network as it
    stands: its average (TrainConfig.ema) when there is one, whose BN statistics are refit
    first, and after the last epoch the raw weights too. The refit after the last epoch makes
    the final model: its time counts as ``seconds`` (training), the rest as ``eval_seconds``."""
    kw = dict(tta=run.cfg.tta, tta_translate=run.cfg.tta_translate, precision=run.precision)
    net = run.step_model if run.ranks.world == 1 else run.model
    last = record["epoch"] == run.cfg.epochs
    t0 = time.perf_counter()
    if run.ema is not None:
        if last:
            raw = evaluate(net, run.test_loader, **kw)
            record["test_loss_raw"], record["test_acc_raw"] = raw
        t1 = time.perf_counter()
        run.bn_loader.set_epoch(record["epoch"] - 1)
        with run.autocast:
            update_bn(itertools.islice(run.bn_loader, EMA_BN_BATCHES), run.ema.module)
        if last:  # the final model's refit counts as training
            refit = time.perf_counter() - t1
            record["seconds"] += refit
            t0 += refit
        net = run.ema.module
    record["test_loss"], record["test_acc"] = evaluate(net, run.test_loader, **kw)
    record["eval_seconds"] = time.perf_counter() - t0


# ---------------------------------------------------------------------------- bookkeeping


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

    def check_finite(self, epoch: int, lr: float) -> None:
        bad = int(self.first_bad)  # the one place the loop reads the device
        if bad >= 0:
            raise FloatingPointError(
                f"loss became NaN or infinite at epoch {epoch + 1}, step {bad} "
                f"(lr {lr:.4g}): lower TrainConfig.lr or add warmup"
            )

    def totals(self, ranks: Ranks) -> tuple[float, float, int]:
        """Mean loss, accuracy and images of the epoch, over every process."""
        seen = torch.tensor(float(self.seen), device=self.loss.device)
        loss, correct, n = all_sum(
            torch.stack([self.loss.float(), self.correct.float(), seen]), ranks
        )
        return (loss / n).item(), (correct / n).item(), int(n.item())


def _my_share(ranks: Ranks, x: torch.Tensor, y: torch.Tensor):
    """This process's equal share of the global batch under torchrun; all of it otherwise."""
    if ranks.world == 1:
        return x, y
    share = len(y) // ranks.world
    part = slice(ranks.rank * share, (ranks.rank + 1) * share)
    return x[part], y[part]


def progress_bar(run: Run, start: int, progress: bool) -> tqdm:
    """The run's progress bar over its steps, from epoch ``start``: on rank 0 only, and silent
    (every call a no-op) with ``progress=False``."""
    steps = len(run.train_loader)
    return tqdm(
        total=run.cfg.epochs * steps,
        initial=start * steps,
        desc=model_name(run.model),
        unit="step",
        disable=not (progress and run.ranks.is_main),
    )


def show(bar: tqdm, record: dict, epochs: int) -> None:
    """An epoch's record on the progress bar."""
    acc = record["test_acc"]
    bar.set_postfix(
        epoch=f"{record['epoch']}/{epochs}",
        loss=f"{record['train_loss']:.3f}",
        test_acc="-" if acc is None else f"{100 * acc:.1f}%",
    )


def stopped(run: Run, history: History) -> None:
    """After Ctrl-C: note in the History how many epochs finished and how many the checkpoint
    holds, and say from which epoch ``resume=True`` goes on."""
    history.meta["interrupted_after_epoch"] = len(history)
    if run.checkpoint is not None:
        history.meta["saved_epochs"] = run.saved_epochs
    if not run.ranks.is_main:  # one message, from the process that wrote the checkpoint
        return
    where = ""
    if run.checkpoint is not None and run.saved_epochs:
        where = f"; resume=True continues from epoch {run.saved_epochs + 1}"
    elif run.checkpoint is not None:
        where = f"; none is saved in {run.checkpoint.parent}, so nothing can be resumed"
    print(f"\nInterrupted: returning the {len(history)} finished epochs{where}.")
