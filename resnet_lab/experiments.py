"""Named experiments and sweeps whose results the book plots.

An experiment is a model (a :func:`~resnet_lab.models.build_model` name and arguments), a
recipe (a :class:`~resnet_lab.train.TrainConfig`), the data it trains on and the seeds to run it
with. A *sweep* is a group of experiments sharing a prefix (``degradation/plain20``,
``degradation/resnet20``, ...), run as one: ``python -m resnet_lab experiment degradation``.

Layout of a results folder: one History JSON per run, ``<experiment>-seed<k>.json``
(``degradation/resnet20-seed1.json``), and ``.pt`` weights beside it where the book needs the
trained network. Which folder is read and which is written is :mod:`resnet_lab.records`' rule:
a checkout's ``results/``, or, installed, the records shipped in the package read beside the
reader's own folder. A run already recorded is skipped; an interrupted run resumes from its
checkpoint in ``runs/<experiment>-seed<k>/``. :func:`load_results` reads a sweep back and
:func:`mean_sd` gives the mean and standard deviation over seeds that the book reports.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from resnet_lab.checkpoints import (
    CHECKPOINT_NAME,
    History,
    RunExistsError,
    atomic_write,
    check_writable,
    export_weights,
    load_checkpoint,
)
from resnet_lab.config import TrainConfig
from resnet_lab.records import own_results_dir, record_dirs
from resnet_lab.records import results_dir as book_results_dir


@dataclass(frozen=True)
class Experiment:
    """A model (by :func:`~resnet_lab.models.build_model` name and arguments) and a recipe."""

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
    # iterations, on a 45k/5k train/validation split (He et al. 2015 §4.2). 64k iterations of
    # 352 batches are 182 epochs; the "paper" schedule divides at 50% and 75% of them.
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
for _name in ("plain20", "plain56", "resnet20", "resnet56"):
    EXPERIMENTS[f"degradation/{_name}"] = Experiment(
        model=_name,
        config=DEGRADATION,
        subset=10_000,
        keep_weights=_name.endswith("20"),
        description="degradation problem at CPU scale (He et al. 2015, Fig. 1)",
    )

# Ablations of ResNet-20 on the degradation experiment's scale; degradation/resnet20 is the
# baseline (shortcut A, post-activation blocks, standard initialisation).
for _name, _kw, _what in (
    ("shortcut_B", {"shortcut": "B"}, "shortcut B: 1x1 projections where the shape changes"),
    ("shortcut_C", {"shortcut": "C"}, "shortcut C: projections in every block"),
    ("preact", {"block": "preact"}, "pre-activation blocks (He et al. 2016)"),
    (
        "zero_init",
        {"zero_init_residual": True},
        "last BN of each residual branch initialised to zero",
    ),
):
    EXPERIMENTS[f"ablation/{_name}"] = Experiment(
        model="resnet20",
        model_kwargs=_kw,
        config=DEGRADATION,
        subset=10_000,
        description=f"ablation of ResNet-20: {_what}",
    )
# Zero-init's confound: weight decay 5e-4 pulls the zero-initialised BN scales back toward zero.
# The same two networks with no weight decay on any BN parameter tell which it was.
for _name, _kw in (("bn_nowd", {}), ("zero_init_bn_nowd", {"zero_init_residual": True})):
    EXPERIMENTS[f"ablation/{_name}"] = Experiment(
        model="resnet20",
        model_kwargs=_kw,
        config=replace(DEGRADATION, bn_weight_decay=False),
        subset=10_000,
        description=f"ablation of ResNet-20: {'zero-init, ' * bool(_kw)}no weight decay on BN",
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
_SPEED = EXPERIMENTS["cpu_speedrun"]
_ALL = dict(flip="alternate", bn_bias_lr=4.0, low_res=24, batch_size=512, lr=0.4)
# On the 2-core AMD EPYC (no AMX) an epoch of this network costs 68 s at 32x32 and 34 s at
# 24x24 (benchmarks/speedrun_costs.py): 22 epochs, half of them small, fill 20 minutes.
SPEEDRUN_PLUS_EPOCHS = 22
for _name, _kw, _what in (
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
):
    EXPERIMENTS[f"speedrun/{_name}"] = Experiment(
        model=_SPEED.model,
        model_kwargs=_SPEED.model_kwargs,
        config=replace(_SPEED.config, **_kw),
        description=f"speed-run technique: {_what}",
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


def run_id(name: str, seed: int) -> str:
    return f"{name}-seed{seed}"


def result_path(name: str, seed: int, results_dir: str | Path | None = None) -> Path:
    """Where run ``seed`` of ``name`` is recorded in ``results_dir``; by default where the reader's
    runs are written (:func:`~resnet_lab.records.own_results_dir`)."""
    return Path(results_dir or own_results_dir()) / f"{run_id(name, seed)}.json"


def is_recorded(path: Path, epochs: int, *, weights: bool = False) -> bool:
    """Whether ``path`` holds a finished run of ``epochs`` epochs (a damaged file does not count),
    and, with ``weights``, its ``.pt`` weights beside it."""
    try:
        h = History.load(path)
    except (OSError, ValueError):
        return False
    finished = len(h) >= epochs and not h.interrupted
    return finished and (not weights or path.with_suffix(".pt").is_file())


def check_results_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove that records can be written there, before any
    training: ``FileExistsError`` if it, or a folder above it, is a file; ``PermissionError``
    if it cannot be written."""
    folder = Path(folder)
    file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:
        raise FileExistsError(
            f"cannot write records to {folder}: {file} is a file, not a folder; "
            "choose another results folder (--results-dir)"
        )
    try:
        return check_writable(folder)
    except PermissionError as e:
        why = e.__cause__.strerror if isinstance(e.__cause__, OSError) else None
        raise PermissionError(
            f"cannot write records to {folder} ({why or e}): "
            "choose another results folder (--results-dir)"
        ) from e


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
    from resnet_lab.cifar10 import load_cifar10
    from resnet_lab.models import build_model
    from resnet_lab.train import seed_everything, train

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    seed = exp.seeds[0] if seed is None else seed
    cfg = replace(exp.config, seed=seed, **overrides)
    out = Path(out) if out is not None else result_path(name, seed)
    run_dir = Path(runs_dir) / run_id(name, seed)
    if not overwrite and is_recorded(out, cfg.epochs):
        if not exp.keep_weights or out.with_suffix(".pt").is_file():
            raise RunExistsError(
                f"{run_id(name, seed)} is already recorded in {out}: "
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
    history = train(
        model,
        data,
        cfg,
        progress=progress,
        checkpoint_dir=run_dir,
        resume=not overwrite,
        overwrite=overwrite,
    )
    history.meta.update(experiment=name, seed=seed, description=exp.description)
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
    path = result_path(name, seed, results_dir)
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
    from tqdm.auto import tqdm

    todo = []
    for exp_name, seed, state in sweep_status(name, seeds, results_dir, overrides.get("epochs")):
        out = result_path(exp_name, seed, results_dir)
        if state == RECORDED:
            tqdm.write(f"{run_id(exp_name, seed)}: already recorded in {out}, skipped")
        else:
            todo.append((exp_name, seed, out))
    done = []
    bar = tqdm(todo, desc=f"sweep {name}", unit="run", disable=not progress, position=0)
    for exp_name, seed, out in bar:
        bar.set_postfix(run=run_id(exp_name, seed))
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
        bar.write(f"{run_id(exp_name, seed)}: {h.summary()}")
    return done


# ---------------------------------------------------------------------------- reading results


def _record_files(exp_name: str, root: Path, note) -> list[tuple[int, Path]]:
    """(seed, path) of the files named exactly ``<stem>-seed<k>.json`` for ``exp_name`` under
    ``root``, by seed; a look-alike (``-seed0-backup.json``, ``-seed0 (copy).json``) gets a note."""
    folder = result_path(exp_name, 0, root).parent
    stem = Path(exp_name).name
    exact = re.compile(re.escape(stem) + r"-seed(0|[1-9][0-9]*)\.json")
    found = []
    for path in sorted(folder.glob(f"{stem}-seed*.json")):
        match = exact.fullmatch(path.name)
        if match:
            found.append((int(match[1]), path))
        else:
            note(f"skipped {path.name}: not a record's name ({stem}-seed<k>.json)")
    return sorted(found)


def _load_record(path: Path, exp_name: str, seed: int, note) -> History | None:
    """The History in ``path`` if it is run ``seed`` of ``exp_name``, as its name says; else
    None and a note (a damaged file, or a copy whose meta names another seed or experiment)."""
    try:
        h = History.load(path)
    except (OSError, ValueError) as e:
        note(f"skipped {path.name}: {e}")
        return None
    config = h.meta.get("config")
    config_seed = config.get("seed") if isinstance(config, dict) else None
    meta_seed = h.meta.get("seed", config_seed)  # a History saved by train() alone has no meta seed
    meta_name = h.meta.get("experiment", exp_name)
    if (meta_name, seed if meta_seed is None else meta_seed) != (exp_name, seed):
        what = meta_name if meta_seed is None else f"{meta_name} seed {meta_seed}"
        note(f"skipped {path.name}: it records {what}, not {exp_name} seed {seed} as its name says")
        return None
    return h


def _load_folder(name: str, root: Path, note) -> dict[str, dict[int, History]]:
    """``{experiment: {seed: History}}`` of the sweep ``name`` recorded in ``root``."""
    out: dict[str, dict[int, History]] = {}
    for exp_name in experiment_names(name):
        for seed, path in _record_files(exp_name, root, note):
            h = _load_record(path, exp_name, seed, note)
            if h is not None:
                out.setdefault(exp_name, {})[seed] = h
    return out


def _add_own(found: dict, own: dict, folder: Path, note) -> None:
    """Put the reader's runs ``own`` into ``found``, in place of the book's of the same seed,
    with a note naming them."""
    for exp_name, by_seed in own.items():
        book = found.setdefault(exp_name, {})
        replaced = sorted(set(book) & set(by_seed))
        book.update(by_seed)
        seeds = ", ".join(map(str, sorted(by_seed)))
        instead = f", in place of the book's seed {', '.join(map(str, replaced))}"
        note(f"your own runs: {exp_name} seed {seeds} from {folder}{instead if replaced else ''}")


def load_results(
    name: str, results_dir: str | Path | None = None, *, notes: list[str] | None = None
) -> dict[str, list[History]]:
    """The recorded runs of a sweep or experiment: ``{experiment: [History per seed]}``, seeds
    in order. Only files named ``<stem>-seed<k>.json`` count. A damaged file, or a record whose
    meta names another seed or experiment than its file name, is skipped with a line saying so
    appended to ``notes`` (and printed when ``notes`` is None), so one bad file never hides the
    others. Without ``results_dir``, the book's records (:func:`~resnet_lab.records.results_dir`)
    are read, and, installed, the reader's own beside them: a note names each of the reader's
    runs. A ``results_dir`` that does not exist raises ``FileNotFoundError`` (a mistyped
    folder must not read as "nothing recorded"); a missing default folder gives a note."""
    note = print if notes is None else notes.append
    if results_dir:
        root = Path(results_dir)
        if not root.is_dir():
            raise FileNotFoundError(
                f"no results folder {root}: check the path, or leave "
                f"results_dir out to read {book_results_dir()}"
            )
        found = _load_folder(name, root, note)
    else:
        book, *own = record_dirs()
        found = _load_folder(name, book, note) if book.is_dir() else {}
        if not book.is_dir() and not own:
            note(f"no results folder {book}: nothing is recorded")
        for folder in own:
            _add_own(found, _load_folder(name, folder, note), folder, note)
    return {n: [by_seed[s] for s in sorted(by_seed)] for n, by_seed in found.items() if by_seed}


def record_weights(name: str, seed: int = 0, *, notes: list[str] | None = None) -> Path | None:
    """The ``.pt`` weights recorded beside run ``seed`` of ``name``: the reader's own when they
    have them (with a note, appended to ``notes``, else printed), else the book's; None when
    neither is recorded."""
    book, *own = [result_path(name, seed, d).with_suffix(".pt") for d in record_dirs()]
    for path in own:
        if path.is_file():
            (print if notes is None else notes.append)(f"your own weights: {name} from {path}")
            return path
    return book if book.is_file() else None


def mean_sd(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for a single value) and count."""
    values = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan"), 0
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd, len(values)


def summarize(
    runs: dict[str, list[History]], metric: str = "test_acc"
) -> dict[str, tuple[float, float, int]]:
    """``{experiment: (mean, sd, n)}`` of the final ``metric`` over seeds: what the book's
    tables and error bars show."""
    return {name: mean_sd(h.final.get(metric) for h in hs) for name, hs in runs.items()}


def compare(
    summary: dict[str, tuple[float, float, int]], baseline: str | None = None
) -> dict[str, dict]:
    """Every configuration of ``summary`` (``{name: (mean, sd, n)}``, from :func:`summarize`)
    against ``baseline`` (default: the first): the difference of the means, its standard error
    sqrt(sd_b²/n_b + sd²/n), and a verdict. A difference beyond twice its standard error is
    "better" or "worse"; within it, "within noise"; with one run on either side there is no spread
    to judge by, and the verdict says so."""
    baseline = next(iter(summary)) if baseline is None else baseline
    if baseline not in summary:
        raise KeyError(f"baseline {baseline!r} is not among {list(summary)}")
    base, base_sd, base_n = summary[baseline]
    out = {}
    for name, (m, sd, n) in summary.items():
        if name == baseline:
            continue
        diff = m - base
        se = math.sqrt(base_sd**2 / base_n + sd**2 / n) if n > 1 and base_n > 1 else float("nan")
        if math.isnan(se):
            verdict = "one seed: no spread to judge by"
        elif abs(diff) < 2 * se:
            verdict = "within noise"
        else:
            verdict = "better" if diff > 0 else "worse"
        out[name] = {"diff": diff, "se": se, "verdict": verdict, "n": n, "baseline_n": base_n}
    return out


# ---------------------------------------------------------------------------- transfer study

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
    from resnet_lab.models import build_model
    from resnet_lab.train import seed_everything, train

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
    from resnet_lab.checkpoints import git_commit
    from resnet_lab.finetune import freeze, load_pretrained, replace_head
    from resnet_lab.models import build_model
    from resnet_lab.train import seed_everything, train

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

    from resnet_lab.cifar10 import load_cifar10
    from resnet_lab.device import hardware_name, pick_device

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
