"""Named experiments and sweeps whose records the book plots.

An *experiment* is a model (a :func:`~resnet_lab.lab.names.build_model` name and arguments), a
recipe (a :class:`~resnet_lab.train.TrainConfig`), the data it trains on and the seeds to run it
with. A *sweep* is a group of experiments sharing a prefix (``degradation/plain20``,
``degradation/resnet20``, ...), run as one: ``python -m resnet_lab experiment degradation``.
A *run* is one experiment with one seed (:func:`run_name`: ``degradation/plain20-seed1``).

:func:`run_experiment` trains a run in its run folder ``runs/<run name>/`` (resumed there if
interrupted) and, once finished, saves its *record* ``<run name>.json`` (with ``.pt`` weights
beside it where the book needs the trained network) in a results folder: by default the
reader's own, never the book's (:mod:`resnet_lab.lab.records`). A run already recorded is
skipped. :func:`~resnet_lab.lab.results.load_results` reads the records back.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from resnet_lab.checkpoints import CHECKPOINT_NAME, History, atomic_save, load_checkpoint
from resnet_lab.cifar10 import load_cifar10
from resnet_lab.config import TrainConfig
from resnet_lab.lab.names import build_model
from resnet_lab.lab.records import git_commit, own_results_dir
from resnet_lab.lab.runfolder import RunExistsError, check_results_folder, train_in_folder
from resnet_lab.train import seed_everything


@dataclass(frozen=True)
class Experiment:
    """A model (by :func:`~resnet_lab.lab.names.build_model` name and arguments) and a recipe."""

    model: str
    config: TrainConfig
    model_kwargs: dict = field(default_factory=dict)
    description: str = ""
    subset: int | None = None  # class-balanced training subset (None: all 50,000 images)
    keep_weights: bool = False  # also save the trained weights beside the JSON (for lesion studies)
    validation: int | None = None  # training images held out (5000: the paper's 45k/5k split)
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per seed: weights, order and augmentation differ


# The paper's ResNet-20 in a 20-minute CPU budget: bf16 autocast + channels_last +
# torch.compile for speed, a one-cycle schedule with Nesterov momentum, label smoothing and
# flip test-time augmentation for accuracy in few epochs.
_CPU_RESNET20 = TrainConfig(
    epochs=34,
    batch_size=256,
    lr=0.2,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    schedule="onecycle",
    warmup=2,
    label_smoothing=0.1,
    channels_last=True,
    compile=True,
    precision="bf16",
    tta=True,
    eval_every=2,
)

EXPERIMENTS: dict[str, Experiment] = {
    "cpu_resnet20": Experiment(
        model="resnet20",
        config=_CPU_RESNET20,
        description="ResNet-20 (He et al. 2015), 20-minute CPU budget",
        keep_weights=True,  # chapter 5 analyses the trained network's errors, one view and two
    ),
    # Speed run: a wider, shallower CIFAR ResNet (14 layers at twice the paper's width, as in the
    # wide-ResNet line of work) with the same speed settings, plus 1-pixel translation views in
    # the test-time augmentation (airbench). 21 epochs fill the 20-minute budget on 2 cores.
    "cpu_speedrun": Experiment(
        model="resnet14",
        model_kwargs={"width": 32},
        config=replace(_CPU_RESNET20, epochs=21, tta_translate=True, eval_every=3),
        description="speed run: ResNet-14 at width 32, goal 90% in 20 CPU minutes",
        seeds=(0,),
    ),
    # The paper's own schedule on a GPU: batch 128, lr 0.1 divided by 10 at 32k and 48k of 64k
    # iterations, on a 45k/5k train/validation split (He et al. 2015 §4.2). 182 epochs of 351
    # batches (the last partial one dropped) are 63,882 iterations; the "paper" schedule divides
    # at 50% and 75% of them. resnet_lab.lab.results.PAPER_RECIPE is this recipe in fp32.
    "gpu_resnet20": Experiment(
        model="resnet20",
        config=TrainConfig(
            epochs=182,
            batch_size=128,
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="paper",
            compile=True,
            eval_every=10,
        ),
        description="ResNet-20, the paper's schedule (64k iterations) on a GPU",
        validation=5000,
        seeds=(0,),
    ),
}

# The degradation problem (He et al. 2015, Fig. 1) at CPU scale: plain and residual networks of
# depth 20 and 56, same recipe, a 10,000-image class-balanced subset, training error recorded.
DEGRADATION = TrainConfig(
    epochs=15,
    batch_size=128,
    lr=0.1,
    nesterov=True,
    weight_decay=5e-4,
    schedule="onecycle",
    warmup=1,
    channels_last=True,
    compile=True,
    precision="bf16",
    eval_every=3,
)
EXPERIMENTS.update(
    {
        f"degradation/{name}": Experiment(
            model=name,
            config=DEGRADATION,
            subset=10_000,
            keep_weights=name.endswith("20"),
            description="degradation problem at CPU scale (He et al. 2015, Fig. 1)",
        )
        for name in ("plain20", "plain56", "resnet20", "resnet56")
    }
)

# Ablations of ResNet-20 on the degradation experiment's scale; degradation/resnet20 is the
# baseline (shortcut A, post-activation blocks, standard initialisation).
ABLATIONS = (  # (name, model changes, what they are)
    ("shortcut_B", {"shortcut": "B"}, "shortcut B: 1x1 projections where the shape changes"),
    ("shortcut_C", {"shortcut": "C"}, "shortcut C: projections in every block"),
    ("preact", {"block": "preact"}, "pre-activation blocks (He et al. 2016)"),
    (
        "zero_init",
        {"zero_init_residual": True},
        "last BN of each residual branch initialised to zero",
    ),
)
EXPERIMENTS.update(
    {
        f"ablation/{name}": Experiment(
            model="resnet20",
            model_kwargs=changes,
            config=DEGRADATION,
            subset=10_000,
            description=f"ablation of ResNet-20: {what}",
        )
        for name, changes, what in ABLATIONS
    }
)
# Zero-init's confound: weight decay 5e-4 pulls the zero-initialised BN scales back toward zero.
# The same two networks with no weight decay on any BN parameter tell which it was.
EXPERIMENTS.update(
    {
        f"ablation/{name}": Experiment(
            model="resnet20",
            model_kwargs=changes,
            config=replace(DEGRADATION, bn_weight_decay=False),
            subset=10_000,
            description="ablation of ResNet-20: "
            f"{'zero-init, ' * bool(changes)}no weight decay on BN",
        )
        for name, changes in (("bn_nowd", {}), ("zero_init_bn_nowd", {"zero_init_residual": True}))
    }
)

# The article trains with Adam (lr 1e-3, constant, no weight decay). The same ResNet-20, data
# and length as degradation/resnet20 (the paper's SGD recipe), with the article's optimiser.
EXPERIMENTS["optimizer/adam_article"] = Experiment(
    model="resnet20",
    config=replace(
        DEGRADATION,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        schedule="constant",
        warmup=0,
        nesterov=False,
    ),
    subset=10_000,
    description="ResNet-20 with the article's optimiser: Adam, lr 1e-3, constant",
)

# The speed run's fast-training techniques, one at a time on top of cpu_speedrun's recipe (21
# epochs), then together: what each adds at equal epochs. Accuracy at equal epochs does not
# depend on the hardware, so these ran on a GPU (benchmarks/gpu_sweep.py); what each costs per
# epoch on the CPU is measured by benchmarks/speedrun_costs.py. "all" combines the techniques
# that did not hurt; "all_long" spends the time they save (batch 512 and the first half of the
# epochs at 24x24 pixels train faster on the CPU) on more epochs: cpu_speedrun_plus's recipe.
_ALL = dict(flip="alternate", bn_bias_lr=4.0, low_res=24, batch_size=512, lr=0.4)
# On the 2-core AMD EPYC (no AMX) an epoch of this network costs 68 s at 32x32 and 34 s at
# 24x24 (benchmarks/speedrun_costs.py): 22 epochs, half of them small, fill 20 minutes.
SPEEDRUN_PLUS_EPOCHS = 22
SPEEDRUN_TECHNIQUES = (  # (name, config changes, what they are)
    ("baseline", {}, "cpu_speedrun's recipe"),
    ("ema99", {"ema": 0.99}, "evaluate an EMA of the weights (decay 0.99 per step)"),
    ("ema999", {"ema": 0.999}, "evaluate an EMA of the weights (decay 0.999 per step)"),
    ("bn_bias_lr4", {"bn_bias_lr": 4.0}, "BN biases at 4x the learning rate"),
    ("bn_bias_lr16", {"bn_bias_lr": 16.0}, "BN biases at 16x the learning rate"),
    ("alt_flip", {"flip": "alternate"}, "alternating flips"),
    ("low_res24", {"low_res": 24}, "progressive resizing: the first half of the epochs at 24x24"),
    ("ls02", {"label_smoothing": 0.2}, "label smoothing 0.2 (batch 256)"),
    ("b512", {"batch_size": 512, "lr": 0.4}, "batch 512, lr 0.4 (label smoothing 0.1)"),
    (
        "b512_ls02",
        {"batch_size": 512, "lr": 0.4, "label_smoothing": 0.2},
        "batch 512, lr 0.4, label smoothing 0.2",
    ),
    ("all", _ALL, "alternating flips + BN biases at 4x + progressive resizing + batch 512"),
    (
        "all_long",
        dict(_ALL, epochs=SPEEDRUN_PLUS_EPOCHS),
        f"all, for {SPEEDRUN_PLUS_EPOCHS} epochs",
    ),
)
EXPERIMENTS.update(
    {
        f"speedrun/{name}": Experiment(
            model=EXPERIMENTS["cpu_speedrun"].model,
            model_kwargs=EXPERIMENTS["cpu_speedrun"].model_kwargs,
            config=replace(EXPERIMENTS["cpu_speedrun"].config, **changes),
            description=f"speed-run technique: {what}",
        )
        for name, changes, what in SPEEDRUN_TECHNIQUES
    }
)
EXPERIMENTS["cpu_speedrun_plus"] = replace(
    EXPERIMENTS["speedrun/all_long"],
    seeds=(0,),
    description="speed run: alternating flips, BN biases at 4x, progressive resizing, batch 512",
)
# The same with three quarters of the epochs at 24x24. In cpu_speedrun_plus an epoch took 33 s
# at 24x24 and 65 s at 32x32 on the EPYC, so 27 epochs (20 small) fit the 20 minutes.
EXPERIMENTS["cpu_speedrun_plus_long"] = replace(
    EXPERIMENTS["cpu_speedrun_plus"],
    config=replace(EXPERIMENTS["cpu_speedrun_plus"].config, epochs=27, low_res_fraction=0.75),
    description="speed run plus, 27 epochs, the first three quarters at 24x24",
)

# short names for groups that are not a path prefix
ALIASES = {"seeds": ["cpu_resnet20"]}


def experiment_names(name: str) -> list[str]:
    """``name`` itself, an alias (``seeds``), or every experiment of the group ``name/...``."""
    if name in EXPERIMENTS:
        return [name]
    if name in ALIASES:
        return list(ALIASES[name])
    group = sorted(n for n in EXPERIMENTS if n.startswith(name + "/"))
    if not group:
        groups = sorted({n.split("/")[0] for n in EXPERIMENTS if "/" in n} | set(ALIASES))
        raise ValueError(
            f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)} or a sweep {groups}"
        )
    return group


def run_name(name: str, seed: int) -> str:
    """A run's name: its experiment and seed, ``degradation/plain20-seed1``. Its run folder is
    ``runs/<run name>/``, its record ``<run name>.json`` in a results folder."""
    return f"{name}-seed{seed}"


def record_path(name: str, seed: int, results_dir: str | Path | None = None) -> Path:
    """The path of the record of run ``seed`` of experiment ``name`` in the results folder
    ``results_dir``; by default the reader's (:func:`~resnet_lab.lab.records.own_results_dir`)."""
    return Path(results_dir or own_results_dir()) / f"{run_name(name, seed)}.json"


def is_recorded(path: Path, epochs: int, *, weights: bool = False) -> bool:
    """Whether ``path`` holds a finished run of ``epochs`` epochs (a damaged file does not count),
    and, with ``weights``, its ``.pt`` weights beside it."""
    try:
        h = History.load(path)
    except (OSError, ValueError):
        return False
    finished = len(h) >= epochs and not h.interrupted
    return finished and (not weights or path.with_suffix(".pt").is_file())


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """The weights a record keeps beside it (``<run>.pt``): only what inference needs from the
    run's training checkpoint, the weights, the model's name, build and signature, and the
    run's History (no optimiser state). Loads with :func:`~resnet_lab.checkpoints.load_checkpoint`
    like a checkpoint."""
    state = load_checkpoint(checkpoint)
    slim = {
        k: state.get(k)
        for k in ("model_name", "build", "signature", "model", "epoch", "config", "data", "history")
    }
    slim["format"] = "resnet_lab.weights/1"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(slim, out)
    return out


def _export_recorded(run_dir: Path, out: Path) -> bool:
    """Export the weights of the finished run recorded in ``out`` from its checkpoint in
    ``run_dir``, if that checkpoint is this run (the same epochs); False if there is none."""
    ckpt = run_dir / CHECKPOINT_NAME
    if not ckpt.is_file() or load_checkpoint(ckpt)["history"]["epochs"] != History.load(out).epochs:
        return False
    export_weights(ckpt, out.with_suffix(".pt"))
    return True


def run_experiment(
    name: str,
    *,
    seed: int | None = None,
    data=None,
    out: str | Path | None = None,
    progress: bool = True,
    runs_dir: str | Path = "runs",
    overwrite: bool = False,
    **overrides,
) -> History:
    """Train experiment ``name`` with ``seed`` (default: its first), resuming from
    ``runs/<name>-seed<k>/`` if interrupted, and save its History to ``out`` (default
    ``results/<name>-seed<k>.json``). ``overrides`` replace config fields. A run already
    recorded in ``out`` is refused unless ``overwrite=True``, which trains it again from scratch.
    A recorded run whose weights (``keep_weights``) are missing is exported again from its
    checkpoint in ``runs/``, or, without one, trained again."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    seed = exp.seeds[0] if seed is None else seed
    cfg = replace(exp.config, seed=seed, **overrides)
    out = Path(out) if out is not None else record_path(name, seed)
    run_dir = Path(runs_dir) / run_name(name, seed)
    if not overwrite and is_recorded(out, cfg.epochs):
        if not exp.keep_weights or out.with_suffix(".pt").is_file():
            raise RunExistsError(
                f"{run_name(name, seed)} is already recorded in {out}: "
                "keep it, or pass overwrite=True to train it again"
            )
        if _export_recorded(run_dir, out):  # only the weights were lost
            return History.load(out)
    check_results_folder(out.parent)  # fail now, not after the run has trained
    if data is None:  # given data is used as it is; otherwise the experiment's own
        data = load_cifar10(validation=exp.validation)
        if exp.subset is not None:
            data = data.subset(exp.subset, seed=0)  # the same images for every seed
    seed_everything(seed)  # before the model is built: the seed fixes the starting weights
    model = build_model(exp.model, **exp.model_kwargs)
    commit = git_commit()  # of the code that trains
    history = train_in_folder(
        model, data, cfg, run_dir, resume=not overwrite, overwrite=overwrite, progress=progress
    )
    history.meta.update(experiment=name, seed=seed, description=exp.description, git_commit=commit)
    if history.interrupted:
        return history  # not recorded: the checkpoint in runs/ resumes it
    history.save(out)
    if exp.keep_weights:
        export_weights(run_dir / CHECKPOINT_NAME, out.with_suffix(".pt"))
    return history


def sweep_runs(name: str, seeds: list[int] | None = None) -> list[tuple[str, int]]:
    """Every (experiment, seed) of the sweep or experiment ``name``."""
    return [
        (n, s)
        for n in experiment_names(name)
        for s in (seeds if seeds is not None else EXPERIMENTS[n].seeds)
    ]


RECORDED = "recorded"


def run_state(
    name: str, seed: int, results_dir: str | Path | None = None, epochs: int | None = None
) -> str:
    """``"recorded"`` if run ``seed`` of experiment ``name`` is finished in ``results_dir``
    (``epochs`` long, default the experiment's; with its ``.pt`` where the experiment keeps its
    weights), else ``"to run"``, with the reason when only the weights are missing."""
    exp = EXPERIMENTS[name]
    path = record_path(name, seed, results_dir)
    epochs = exp.config.epochs if epochs is None else epochs
    if is_recorded(path, epochs, weights=exp.keep_weights):
        return RECORDED
    if exp.keep_weights and is_recorded(path, epochs):
        return f"to run (weights {path.with_suffix('.pt').name} missing)"
    return "to run"


def sweep_status(
    name: str,
    seeds: list[int] | None = None,
    results_dir: str | Path | None = None,
    epochs: int | None = None,
) -> list[tuple[str, int, str]]:
    """Every (experiment, seed, :func:`run_state`) of the sweep or experiment ``name``: the one
    place that decides which runs are still to do (``--list``, :func:`run_sweep`,
    ``benchmarks/gpu_sweep.py``)."""
    return [(n, s, run_state(n, s, results_dir, epochs)) for n, s in sweep_runs(name, seeds)]


def runs_to_do(
    name: str,
    seeds: list[int] | None = None,
    results_dir: str | Path | None = None,
    epochs: int | None = None,
) -> list[tuple[str, int]]:
    """The (experiment, seed) runs of :func:`sweep_status` that are not recorded yet."""
    return [
        (n, s)
        for n, s, state in sweep_status(name, seeds, results_dir, epochs)
        if state != RECORDED
    ]


def run_sweep(
    name: str,
    *,
    seeds: list[int] | None = None,
    results_dir: str | Path | None = None,
    runs_dir: str | Path = "runs",
    progress: bool = True,
    data=None,
    **overrides,
) -> list[History]:
    """Run every experiment of a sweep with every seed, skipping runs already recorded in
    ``results/``, with a progress bar over runs. Returns the Histories of the runs it trained."""
    todo = []
    for exp_name, seed, state in sweep_status(name, seeds, results_dir, overrides.get("epochs")):
        out = record_path(exp_name, seed, results_dir)
        if state == RECORDED:
            tqdm.write(f"{run_name(exp_name, seed)}: already recorded in {out}, skipped")
        else:
            todo.append((exp_name, seed, out))
    done = []
    bar = tqdm(todo, desc=f"sweep {name}", unit="run", disable=not progress, position=0)
    for exp_name, seed, out in bar:
        bar.set_postfix(run=run_name(exp_name, seed))
        h = run_experiment(
            exp_name,
            seed=seed,
            data=data,
            out=out,
            runs_dir=runs_dir,
            progress=progress,
            **overrides,
        )
        done.append(h)
        if h.interrupted:
            break
        line = f"{run_name(exp_name, seed)}: {' '.join(h.summary().split())}"
        bar.write(textwrap.fill(line, 77, subsequent_indent="  "))
    return done
