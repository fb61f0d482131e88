"""The transfer study of chapter 8: pretrain on some CIFAR-10 classes, adapt to the others.

A network is pretrained once on the animal classes; then each method adapts to the vehicle
classes from 10, 50 or 250 labelled images per class, with three seeds. Each method gets its own
recipe, chosen on the labelled images alone (never on the test set), then tested once:

- ``linear_probe``: a logistic regression on the frozen network's pooled features, fit to
  convergence by L-BFGS; k-fold cross-validation chooses its L2 strength, and whether to fit
  on 7 random crops-and-flips of each image too;
- ``scratch``, ``finetune``, ``finetune_lowlr``: SGD on the network; a small grid (learning
  rates, then more steps at the best rate) is scored on one held-out fold of the labelled
  images, and the chosen setting is retrained on all of them.

The records are one JSON list, ``transfer.json``, each run with its chosen setting and the
validation scores behind the choice; the pretrained network is kept beside it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from resnet_lab.checkpoints import CHECKPOINT_NAME, atomic_write
from resnet_lab.cifar10 import load_cifar10
from resnet_lab.config import TrainConfig, is_real
from resnet_lab.device import hardware_name, pick_device
from resnet_lab.evaluation import evaluate
from resnet_lab.finetune import load_pretrained, replace_head
from resnet_lab.lab.experiments import DEGRADATION, export_weights
from resnet_lab.lab.names import build_model
from resnet_lab.lab.probe import (
    L2_GRID,
    augmented_features,
    best_candidate,
    choose_probe,
    fit_linear_head,
    fold_ids,
)
from resnet_lab.lab.records import git_commit, own_results_dir, record_dirs
from resnet_lab.lab.results import mean_sd
from resnet_lab.lab.runfolder import check_results_folder, train_in_folder
from resnet_lab.loader import CifarLoader
from resnet_lab.models import count_params
from resnet_lab.train import seed_everything, train

ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
VEHICLES = ("airplane", "automobile", "ship", "truck")
TRANSFER_METHODS = ("scratch", "linear_probe", "finetune", "finetune_lowlr")
NETWORK_METHODS = ("scratch", "finetune", "finetune_lowlr")  # trained by SGD; the probe is fit
# Records of this protocol count; those of the equal-step study before it (no "protocol") do not.
PROTOCOL = "validated/1"


@dataclass(frozen=True)
class TransferStudy:
    """Pretrain on some CIFAR-10 classes, adapt to the others with few labels (chapter 6).

    Each (method, labels per class, seed) run chooses its recipe on its own labelled images: they
    are cut into ``folds`` class-balanced folds (fewer when a class has fewer images). The probe
    scores each (views, L2) by cross-validation over all folds; a network method trains each
    candidate on all folds but the first and scores it on that one. Scores are validation
    accuracy, ties broken by validation loss. The seed picks the labelled images, the folds, the
    new head's (from scratch, the whole network's) starting weights, the order and the
    augmentation; the pretrained network is the same for all.
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
    steps: int = 250  # SGD steps of a network candidate ...
    long_steps: int | None = 500  # ... and of one more at the best lr (None: no such candidate)
    batch_size: int = 64
    test_subset: int | None = None  # target-class test images (None: all 4,000)
    scratch_lrs: tuple[float, ...] = (0.05, 0.1, 0.2)  # from scratch: the usual 0.1, x0.5, x2
    finetune_lrs: tuple[float, ...] = (0.025, 0.05, 0.1)  # finetune; finetune_lowlr's head
    backbone_scale: float = 0.1  # finetune_lowlr: the backbone trains at lr x this
    probe_l2: tuple[float, ...] = L2_GRID  # the probe's L2 strengths: 1e-5 ... 1
    probe_views: tuple[int, ...] = (1, 8)  # fit on the images alone, or with 7 crops-and-flips
    folds: int = 5

    def lrs(self, method: str) -> tuple[float, ...]:
        """The learning rates a network method chooses from."""
        if method not in NETWORK_METHODS:
            raise ValueError(
                f"method must be one of {NETWORK_METHODS} (the linear probe is fit by "
                f"L-BFGS, with no learning rate), got {method!r}"
            )
        return self.scratch_lrs if method == "scratch" else self.finetune_lrs

    def config(
        self,
        method: str,
        n_images: int,
        seed: int,
        lr: float,
        steps: int,
    ) -> TrainConfig:
        """The recipe of one network run: about ``steps`` steps of
        one-cycle SGD at peak ``lr`` on ``n_images``, tested once."""
        self.lrs(method)  # refuses the probe and unknown names
        batch = min(self.batch_size, n_images)
        epochs = max(1, round(steps / (n_images // batch)))
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
    (default: where the reader's runs are written, :func:`~resnet_lab.lab.records.own_results_dir`):
    ``transfer.json`` and ``transfer/pretrained.pt``, or the names an earlier version gave
    them (``finetune.json``, ``finetune/pretrained.pt``) where only those are there."""
    root = Path(results_dir) if results_dir else own_results_dir()
    paths = [root / "transfer.json", root / "transfer" / "pretrained.pt"]
    for i, old in enumerate((root / "finetune.json", root / "finetune" / "pretrained.pt")):
        if not paths[i].exists() and old.is_file():
            paths[i] = old
    return paths[0], paths[1]


def load_transfer(
    results_dir: str | Path | None = None, *, notes: list[str] | None = None
) -> tuple[list[dict], Path | None]:
    """The transfer study as the book reads it: its records and its pretrained weights (None
    when none are recorded). Without ``results_dir``, the book's records, and, installed, the
    reader's own (from their ``experiment transfer``) in place of the book's run of the same
    method, labels and seed, with a note saying so (appended to ``notes``, else printed). A
    damaged ``transfer.json``, and records of the older equal-step protocol, are skipped with a
    note."""
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
        if old := [r for r in records if r.get("protocol") != PROTOCOL]:
            note(f"skipped {len(old)} runs of {out}: {_OLD}")
        records = [r for r in records if r.get("protocol") == PROTOCOL]
        for r in [r for r in records if _damaged(r)]:
            note(f"skipped a run of {out.name}: {_damaged(r)}")
            records.remove(r)
        if i and records:
            note(f"your own runs: {len(records)} transfer runs from {out}")
        runs |= {(r["method"], r["labels_per_class"], r["seed"]): r for r in records}
        if pretrained.is_file():
            if i:
                note(f"your own pretrained network: {pretrained}")
            weights = pretrained
    return list(runs.values()), weights


_OLD = (
    f"made before each method chose its recipe (not protocol {PROTOCOL}); "
    "move them aside and rerun `python -m resnet_lab experiment transfer`"
)


def _damaged(record: dict) -> str | None:
    """What makes a transfer run's record unusable (an accuracy outside [0, 1], a NaN loss, a
    missing setting), or None."""
    if not all(isinstance(record.get(k), int) for k in ("labels_per_class", "seed")):
        return f"{str(record)[:60]} lacks its labels_per_class or seed"
    what = f"{record.get('method')} {record['labels_per_class']}/class seed {record['seed']}"
    if record.get("method") not in TRANSFER_METHODS:
        return f"{what}: unknown method"
    acc, train_acc, loss = (record.get(k) for k in ("test_acc", "train_acc", "test_loss"))
    for key, value in (("test_acc", acc), ("train_acc", train_acc)):
        if (value is not None or key == "test_acc") and not (is_real(value) and 0 <= value <= 1):
            return f"{what}: {key} {value!r} is not a fraction in [0, 1]"
    if loss is not None and not is_real(loss):
        return f"{what}: test_loss {loss!r} is not a finite number"
    return None


def _transfer_records(out: Path) -> list[dict]:
    if not out.is_file():
        return []
    try:
        records = json.loads(out.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        records = e
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        why = records if isinstance(records, Exception) else "not a list of runs"
        raise ValueError(
            f"{out} is not a transfer study's JSON records ({why}): "
            "move it aside, or choose another results folder"
        )
    return records


def transfer_status(
    study: TransferStudy = TRANSFER, out: str | Path | None = None
) -> list[tuple[str, int, int, bool]]:
    """Every (method, labels per class, seed) run of ``study``, in the order they run, and
    whether ``out`` (default: ``transfer.json`` in the reader's results folder) records it (in
    this protocol)."""
    out = Path(out) if out is not None else transfer_paths()[0]
    done = {
        (r["method"], r["labels_per_class"], r["seed"])
        for r in _transfer_records(out)
        if r.get("protocol") == PROTOCOL
    }
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
    run_dir = runs_dir / "transfer-pretrain"
    h = train_in_folder(net, source, study.pretrain, run_dir, resume=True, progress=progress)
    if h.interrupted:
        return False
    h.meta.update(
        git_commit=git_commit(),
        experiment="transfer/pretrain",
        description=f"{study.model} pretrained on {', '.join(study.source)}",
    )
    h.save(weights.with_suffix(".json"))
    export_weights(run_dir / CHECKPOINT_NAME, weights)
    return True


# ---------------------------------------------------------------------------- choosing a recipe


def _held_out(data, val: torch.Tensor):
    """``data`` with the images where ``val`` is set as its test split, the others as training."""
    return replace(
        data,
        train_images=data.train_images[~val],
        train_labels=data.train_labels[~val],
        test_images=data.train_images[val],
        test_labels=data.train_labels[val],
    )


def _network(study: TransferStudy, weights: Path, method: str, seed: int):
    seed_everything(seed)
    net = build_model(study.model, num_classes=len(study.source))
    if method != "scratch":
        load_pretrained(net, weights)
    return replace_head(net, len(study.target))  # fresh head: from the seed, for every method


def _train_network(study, data, weights, method, seed, lr, steps):
    cfg = study.config(method, len(data.train_labels), seed, lr, steps)
    return train(_network(study, weights, method, seed), data, cfg, progress=False)


def _choose_network(study: TransferStudy, few, weights: Path, method: str, seed: int):
    """{lr, steps} for a network method, and how it was chosen: each lr at ``study.steps``, then
    ``study.long_steps`` at the best, trained on all folds but the first and scored on that one.
    One candidate only: nothing is trained to choose it."""
    grid = [(lr, study.steps) for lr in study.lrs(method)]
    if len(grid) == 1 and study.long_steps is None:
        return {"lr": grid[0][0], "steps": grid[0][1]}, {"by": "one candidate", "candidates": []}
    folds = fold_ids(few.train_labels, study.folds, seed)
    split = _held_out(few, folds == 0)
    scores = []

    def score(lr, steps):
        h = _train_network(study, split, weights, method, seed, lr, steps)
        val = {"val_acc": h.final["test_acc"], "val_loss": h.final["test_loss"]}
        scores.append({"lr": lr, "steps": steps, **val})

    for lr, steps in grid:
        score(lr, steps)
    if study.long_steps is not None:
        score(best_candidate(scores)["lr"], study.long_steps)
    best = best_candidate(scores)
    by = f"hold-out: 1 fold of {int(folds.max()) + 1} ({len(split.test_labels)} images)"
    return {"lr": best["lr"], "steps": best["steps"]}, {"by": by, "candidates": scores}


# ---------------------------------------------------------------------------- one run


def _probe_run(study: TransferStudy, few, weights: Path, seed: int) -> dict:
    k = len(study.target)
    net = _network(study, weights, "linear_probe", seed).to(pick_device("auto"))
    x, y = augmented_features(net, few.train_images, max(study.probe_views), seed), few.train_labels
    recipe, selection = choose_probe(
        x, y, k, study.probe_l2, study.probe_views, folds=study.folds, seed=seed
    )
    v = recipe["views"]
    fit = fit_linear_head(x[:v].flatten(0, 1), y.repeat(v), k, recipe["l2"])
    with torch.no_grad():
        net.fc.weight.copy_(fit.weight)
        net.fc.bias.copy_(fit.bias)
    device = net.fc.weight.device
    test = CifarLoader(few.test_images, few.test_labels, 1000, train=False, device=device)
    test_loss, test_acc = evaluate(net, test)
    train_acc = ((x[0] @ fit.weight.T + fit.bias).argmax(1) == y).float().mean().item()
    fitted = {"lbfgs_iterations": fit.iterations, "grad_max": fit.grad_max}
    return {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "train_acc": train_acc,
        "steps": None,
        "recipe": {**recipe, **fitted, "converged": fit.converged},
        "selection": selection,
        "meta": {"trainable_parameters": count_params(net.fc), "config": None},
    }


def _network_run(study: TransferStudy, few, weights: Path, method: str, seed: int) -> dict:
    t0 = time.perf_counter()
    recipe, selection = _choose_network(study, few, weights, method, seed)
    chosen = time.perf_counter()
    h = _train_network(study, few, weights, method, seed, recipe["lr"], recipe["steps"])
    n = len(few.train_labels)
    return {
        "test_acc": h.final["test_acc"],
        "test_loss": h.final["test_loss"],
        "train_acc": h.final["train_acc"],
        "steps": len(h) * (n // h.meta["config"]["batch_size"]),
        "recipe": recipe,
        "selection": selection,
        "meta": {
            "selection_minutes": (chosen - t0) / 60,
            "trainable_parameters": h.meta["trainable_parameters"],
            "config": h.meta["config"],
        },
    }


def _machine() -> dict:
    """How loaded the machine was: its load average (1, 5, 15 min) and this process's
    niceness; None where the system does not say."""
    try:
        return {"load_average": [round(v, 2) for v in os.getloadavg()], "niceness": os.nice(0)}
    except (AttributeError, OSError):
        return {"load_average": None, "niceness": None}


def _transfer_run(
    study: TransferStudy, target, weights: Path, run: tuple[str, int, int], hardware: str, shared
) -> dict:
    """One adaptation run of the transfer study on the ``target`` classes, as its record."""
    method, budget, seed = run
    few = target.subset(budget * len(study.target), study.test_subset, seed=seed)
    t0 = time.perf_counter()
    if method == "linear_probe":
        r = _probe_run(study, few, weights, seed)
    else:
        r = _network_run(study, few, weights, method, seed)
    meta = {
        "hardware": hardware,
        "minutes": (time.perf_counter() - t0) / 60,
        "commit": git_commit(),
        "data": few.describe(),
        "model": study.model,
        "pretrained": None if method == "scratch" else str(weights.name),
        **r.pop("meta"),
        **_machine(),
    }
    if shared:
        meta["cpu_shared"] = shared
    head = {"method": method, "labels_per_class": budget, "seed": seed, "protocol": PROTOCOL}
    return {**head, **r, "meta": meta}


def run_transfer_study(
    study: TransferStudy = TRANSFER,
    *,
    data=None,
    out: str | Path | None = None,
    weights: str | Path | None = None,
    runs_dir: str | Path = "runs",
    progress: bool = True,
    cpu_shared: str | None = None,
) -> list[dict]:
    """Run (or resume) the transfer study: pretrain on ``study.source`` (kept in ``weights``,
    default ``transfer/pretrained.pt`` beside ``out``, with its History beside it), then one run
    per method x budget x seed on ``study.target``, each appended to ``out`` (default:
    ``transfer.json`` in the reader's results folder) as soon as it ends, with ``cpu_shared`` in
    its meta when given (other jobs shared the machine: its minutes overstate the cost). Runs
    already in ``out`` are skipped; records of the older protocol there are refused."""
    from tqdm.auto import tqdm

    out = Path(out) if out is not None else transfer_paths()[0]
    weights = Path(weights) if weights is not None else out.parent / "transfer" / "pretrained.pt"
    records = _transfer_records(out)
    if old := [r for r in records if r.get("protocol") != PROTOCOL]:
        raise ValueError(f"{out} holds {len(old)} runs {_OLD}")
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
    for run in bar:
        bar.set_postfix(method=run[0], labels=run[1], seed=run[2])
        records.append(_transfer_run(study, target, weights, run, hardware, cpu_shared))
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
