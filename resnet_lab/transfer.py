"""The transfer study of chapter 6: pretrain on some CIFAR-10 classes, adapt to the others.

A network is pretrained once on the animal classes; then each method (from scratch, a
frozen linear probe, full fine-tuning, fine-tuning with a low backbone rate) adapts to the
vehicle classes from 10, 50 or 250 labelled images per class, with three seeds. The records
are one JSON list, ``finetune.json``, and the pretrained network beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from resnet_lab.checkpoints import CHECKPOINT_NAME, atomic_write, export_weights, git_commit
from resnet_lab.cifar10 import load_cifar10
from resnet_lab.config import TrainConfig
from resnet_lab.device import hardware_name, pick_device
from resnet_lab.experiments import DEGRADATION
from resnet_lab.finetune import freeze, load_pretrained, replace_head
from resnet_lab.models import build_model
from resnet_lab.records import own_results_dir, record_dirs
from resnet_lab.results import mean_sd
from resnet_lab.runfolder import check_results_folder
from resnet_lab.train import seed_everything, train

ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
VEHICLES = ("airplane", "automobile", "ship", "truck")
TRANSFER_METHODS = ("scratch", "linear_probe", "finetune", "finetune_lowlr")


@dataclass(frozen=True)
class TransferStudy:
    """Pretrain on some CIFAR-10 classes, adapt to the others with few labels (chapter 6).

    Every (method, labels per class, seed) run trains the same number of optimiser steps, so
    the methods are compared at equal cost. The seed picks the labelled images, the new head's
    (or, from scratch, the whole network's) starting weights, the order and the augmentation;
    the pretrained network is the same for all.
    """

    model: str = "resnet20"
    source: tuple[str, ...] = ANIMALS
    target: tuple[str, ...] = VEHICLES
    pretrain: TrainConfig = field(
        default_factory=lambda: replace(DEGRADATION, epochs=10, eval_every=5)
    )
    pretrain_subset: int | None = None  # source-class training images (None: all 30,000)
    budgets: tuple[int, ...] = (10, 50, 250)  # labelled training images per target class
    methods: tuple[str, ...] = TRANSFER_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 250  # optimiser steps of every adaptation run
    batch_size: int = 64
    test_subset: int | None = None  # target-class test images (None: all 4,000)
    lr: float = 0.05  # fine-tuning lr (the head's, with finetune_lowlr)
    scratch_lr: float = 0.1  # from scratch and the linear probe: the usual lr of a fresh layer
    backbone_scale: float = 0.1  # finetune_lowlr: the backbone trains at lr x this

    def config(self, method: str, n_images: int, seed: int) -> TrainConfig:
        """The recipe of one adaptation run: ``steps`` steps of
        one-cycle SGD, evaluated once."""
        if method not in TRANSFER_METHODS:
            raise ValueError(
                f"method must be one of {TRANSFER_METHODS}, got {method!r}",
            )
        batch = min(self.batch_size, n_images)
        epochs = max(1, round(self.steps * batch / n_images))
        fresh = method in ("scratch", "linear_probe")
        lr = self.scratch_lr if fresh else self.lr
        low = method == "finetune_lowlr"
        scales = {"backbone": self.backbone_scale} if low else {}
        return TrainConfig(
            epochs=epochs,
            batch_size=batch,
            lr=lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="onecycle",
            warmup=0.1 * epochs,
            seed=seed,
            eval_every=epochs,
            lr_scales=scales,
            channels_last=self.pretrain.channels_last,
            precision=self.pretrain.precision,
        )


TRANSFER = TransferStudy()


def transfer_paths(results_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Where the transfer study keeps its records and its pretrained network in ``results_dir``
    (default: where the reader's runs are written, :func:`~resnet_lab.records.own_results_dir`):
    ``finetune.json`` and ``finetune/pretrained.pt``."""
    root = Path(results_dir) if results_dir else own_results_dir()
    return root / "finetune.json", root / "finetune" / "pretrained.pt"


def load_transfer(
    results_dir: str | Path | None = None, *, notes: list[str] | None = None
) -> tuple[list[dict], Path | None]:
    """The transfer study as the book reads it: its records and its pretrained weights (None
    when none are recorded). Without ``results_dir``, the book's records, and, installed, the
    reader's own (from their ``experiment finetune``) in place of the book's run of the same
    method, labels and seed, with a note saying so (appended to ``notes``, else printed). A
    damaged ``finetune.json`` is skipped with a note."""
    note = print if notes is None else notes.append
    folders = [Path(results_dir)] if results_dir else record_dirs()
    runs: dict[tuple, dict] = {}
    weights = None
    for i, folder in enumerate(folders):
        out, pretrained = transfer_paths(folder)
        try:
            records = _transfer_records(out)
        except ValueError as e:
            note(f"skipped {out.name}: {e}")
            records = []
        if i and records:
            note(f"your own runs: {len(records)} transfer runs from {out}")
        runs |= {(r["method"], r["labels_per_class"], r["seed"]): r for r in records}
        if pretrained.is_file():
            if i:
                note(f"your own pretrained network: {pretrained}")
            weights = pretrained
    return list(runs.values()), weights


def _transfer_records(out: Path) -> list[dict]:
    if not out.is_file():
        return []
    try:
        return json.loads(out.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{out} is not a transfer study's JSON records ({e}): "
            "move it aside, or choose another results folder"
        ) from e


def transfer_status(
    study: TransferStudy = TRANSFER, out: str | Path | None = None
) -> list[tuple[str, int, int, bool]]:
    """Every (method, labels per class, seed) run of ``study``, in the order they run, and
    whether ``out`` (default ``results/finetune.json``) records it."""
    out = Path(out) if out is not None else transfer_paths()[0]
    done = {(r["method"], r["labels_per_class"], r["seed"]) for r in _transfer_records(out)}
    return [
        (m, b, s, (m, b, s) in done)
        for b in study.budgets
        for m in study.methods
        for s in study.seeds
    ]


def _pretrain(study: TransferStudy, data, weights: Path, runs_dir: Path, progress: bool) -> bool:
    """Pretrain on ``study.source`` (resumable from ``runs_dir``) and export the network to
    ``weights``, its History beside it. False if interrupted."""

    source = data.select_classes(study.source)
    if study.pretrain_subset:
        source = source.subset(study.pretrain_subset, seed=0)
    seed_everything(0)
    net = build_model(study.model, num_classes=len(study.source))
    run_dir = runs_dir / "finetune-pretrain"
    h = train(net, source, study.pretrain, progress=progress, checkpoint_dir=run_dir, resume=True)
    if h.interrupted:
        return False
    h.meta.update(
        experiment="finetune/pretrain",
        description=f"{study.model} pretrained on {', '.join(study.source)}",
    )
    h.save(weights.with_suffix(".json"))
    export_weights(run_dir / CHECKPOINT_NAME, weights)
    return True


def _transfer_run(
    study: TransferStudy, target, weights: Path, method: str, budget: int, seed: int, hardware: str
) -> dict:
    """One adaptation run of the transfer study on the ``target`` classes, as its record."""

    n = budget * len(study.target)
    few = target.subset(n, study.test_subset, seed=seed)
    seed_everything(seed)
    net = build_model(study.model, num_classes=len(study.source))
    if method != "scratch":
        load_pretrained(net, weights)
    replace_head(net, len(study.target))  # fresh head: from the seed, for every method
    if method == "linear_probe":
        freeze(net, "backbone")
    t0 = time.perf_counter()
    h = train(net, few, study.config(method, n, seed), progress=False)
    return {
        "method": method,
        "labels_per_class": budget,
        "seed": seed,
        "test_acc": h.final["test_acc"],
        "train_acc": h.final["train_acc"],
        "steps": len(h) * (n // h.meta["config"]["batch_size"]),
        "meta": {
            "hardware": hardware,
            "minutes": (time.perf_counter() - t0) / 60,
            "commit": git_commit(),
            "data": few.describe(),
            "model": h.meta["model"],
            "pretrained": None if method == "scratch" else str(weights.name),
            "trainable_parameters": h.meta["trainable_parameters"],
            "config": h.meta["config"],
        },
    }


def run_transfer_study(
    study: TransferStudy = TRANSFER,
    *,
    data=None,
    out: str | Path | None = None,
    weights: str | Path | None = None,
    runs_dir: str | Path = "runs",
    progress: bool = True,
) -> list[dict]:
    """Run (or resume) the transfer study: pretrain on ``study.source`` (kept in ``weights``,
    default ``finetune/pretrained.pt`` beside ``out``, with its History beside it), then one run
    per method x budget x seed on ``study.target``, each appended to ``out`` (default
    ``results/finetune.json``) as soon as it ends. Runs already in ``out`` are skipped."""
    from tqdm.auto import tqdm

    out = Path(out) if out is not None else transfer_paths()[0]
    weights = Path(weights) if weights is not None else out.parent / "finetune" / "pretrained.pt"
    records = _transfer_records(out)
    todo = [(m, b, s) for m, b, s, done in transfer_status(study, out) if not done]
    if not todo and weights.is_file():
        return records
    for folder in [out.parent] + ([] if weights.is_file() else [weights.parent]):
        check_results_folder(folder)  # fail now, not after training (given weights are only read)
    data = data if data is not None else load_cifar10()
    if not weights.is_file() and not _pretrain(study, data, weights, Path(runs_dir), progress):
        return []  # interrupted: the checkpoint in runs_dir resumes it
    target = data.select_classes(study.target)
    hardware = hardware_name(pick_device("auto"))
    bar = tqdm(todo, desc="transfer runs", unit="run", disable=not progress)
    for method, budget, seed in bar:
        bar.set_postfix(method=method, labels=budget, seed=seed)
        records.append(_transfer_run(study, target, weights, method, budget, seed, hardware))
        text = json.dumps(records, indent=1)
        atomic_write(
            out, lambda tmp, text=text: tmp.write_text(text)
        )  # every finished run is kept at once
    return records


def transfer_summary(records: list[dict]) -> dict[tuple[str, int], tuple[float, float, int]]:
    """``{(method, labels_per_class): (mean, sd, n)}`` of the test accuracy over seeds."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in records:
        groups.setdefault((r["method"], r["labels_per_class"]), []).append(r["test_acc"])
    return {k: mean_sd(v) for k, v in sorted(groups.items())}
