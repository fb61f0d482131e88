"""Reading the recorded runs back: what the book's figures and tables show.

:func:`load_results` reads a sweep's Histories (the book's records, and, installed, the
reader's own beside them, :mod:`resnet_lab.lab.records`; :func:`load_sweep` names them without the
sweep's folder), :func:`summarize` gives the mean and standard deviation over seeds of a final
metric (:func:`final_errors` of an error in percent, :func:`format_errors` as text),
:func:`compare` judges each configuration against a baseline by the standard error of the
difference, and :func:`config_differences` lists how two recipes differ, field by field;
:data:`PAPER_RECIPE` is the paper's recipe to compare with; :func:`ablation_runs` reads chapter
7's ablations and :func:`format_verdicts` formats :func:`compare`'s verdicts.
:func:`recorded_model` rebuilds a recorded network with its shipped weights. The speed runs'
records are read in :mod:`resnet_lab.lab.speedruns`.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from torch import nn

from resnet_lab.checkpoints import History, load_checkpoint
from resnet_lab.config import TrainConfig
from resnet_lab.lab.experiments import EXPERIMENTS, experiment_names, record_path
from resnet_lab.lab.names import build_model
from resnet_lab.lab.records import record_dirs
from resnet_lab.lab.records import results_dir as book_results_dir


def _record_files(exp_name: str, root: Path, note) -> list[tuple[int, Path]]:
    """(seed, path) of the files named exactly ``<stem>-seed<k>.json`` for ``exp_name`` under
    ``root``, by seed; a look-alike (``-seed0-backup.json``, ``-seed0 (copy).json``) gets a note."""
    folder = record_path(exp_name, 0, root).parent
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
    others. Without ``results_dir``, the book's records
    (:func:`~resnet_lab.lab.records.results_dir`) are read, and, installed, the reader's own
    beside them: a note names each of the reader's runs. A ``results_dir`` that does not exist
    raises ``FileNotFoundError`` (a mistyped folder must not read as "nothing recorded"); a
    missing default folder gives a note."""
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
    book, *own = [record_path(name, seed, d).with_suffix(".pt") for d in record_dirs()]
    for path in own:
        if path.is_file():
            (print if notes is None else notes.append)(f"your own weights: {name} from {path}")
            return path
    return book if book.is_file() else None


def recorded_model(name: str, seed: int = 0, *, notes: list[str] | None = None) -> nn.Module | None:
    """The network of experiment ``name`` (run ``seed``) with its recorded weights
    (:func:`record_weights`: the reader's own, else the book's), on the CPU; None when no
    weights are recorded (only experiments with ``keep_weights`` record them)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    path = record_weights(name, seed, notes=notes)
    if path is None:
        return None
    exp = EXPERIMENTS[name]
    model = build_model(exp.model, **exp.model_kwargs)
    load_checkpoint(path, model)
    return model


def data_copy(histories: list[History]) -> str:
    """Which CIFAR-10 the runs were trained on, as a figure label says it: "JPEG copy",
    "official data", or "mixed data" when they differ (read from each record's ``meta``)."""
    jpeg = {"JPEG" in h.meta.get("data", "") for h in histories}
    if len(jpeg) != 1:
        return "mixed data" if jpeg else "no data"
    return "JPEG copy" if jpeg.pop() else "official data"


def load_note(name: str) -> dict | None:
    """The book's note ``<name>.json`` of its records folder (a measurement documented beside
    the runs, not a History: ``cifar10_jpeg_copy``, what the JPEG copy of CIFAR-10 costs
    published weights), or None when it is not there."""
    path = record_dirs()[0] / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): restore it from the repository") from e


def mean_sd(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for a single value) and count; a None (not measured)
    is left out. A NaN or infinite value is a ValueError: it must not vanish from a mean."""
    values = [float(v) for v in values if v is not None]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"cannot average {values}: a value that is not a finite number, from a damaged "
            "record or a run that diverged; load the records with load_results, which skips "
            "such a record with a note"
        )
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


def load_sweep(name: str, *, notes: list[str] | None = None) -> dict[str, list[History]]:
    """:func:`load_results` of the sweep ``name``, each experiment named without the sweep's
    folder: ``"plain20"`` for ``"degradation/plain20"``."""
    return {exp.rsplit("/", 1)[-1]: hs for exp, hs in load_results(name, notes=notes).items()}


def final_errors(
    runs: dict[str, list[History]], metric: str = "train_acc"
) -> dict[str, tuple[float, float, int]]:
    """``{experiment: (mean, sd, n)}`` of the final error over seeds, in percent: the error is
    100 (1 - ``metric``), the complement of an accuracy."""
    return {k: (100 * (1 - m), 100 * sd, n) for k, (m, sd, n) in summarize(runs, metric).items()}


def format_errors(errors: dict[str, tuple[float, float, int]], what: str = "final error") -> str:
    """:func:`final_errors` as lines of text, one per experiment: mean ± sd and the seeds."""
    return "\n".join(
        f"{k:9s} {what} {m:5.1f} ± {sd:.1f}%  ({n} seed{'s' * (n != 1)})"
        for k, (m, sd, n) in errors.items()
    )


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
        se = standard_error(base_sd, base_n, sd, n)
        if math.isnan(se):
            verdict = "one seed: no spread to judge by"
        elif abs(diff) <= 2 * se:  # equal means with no spread too
            verdict = "within noise"
        else:
            verdict = "better" if diff > 0 else "worse"
        out[name] = {"diff": diff, "se": se, "verdict": verdict, "n": n, "baseline_n": base_n}
    return out


def standard_error(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    """The standard error of a difference of two means, sqrt(sd_a²/n_a + sd_b²/n_b), from each
    side's sample standard deviation and count; NaN when a side has fewer than two runs (one run
    has no spread to measure)."""
    if n_a < 2 or n_b < 2:
        return float("nan")
    return math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)


def luck_beyond(k: float, seeds: int, steps: int = 2_000) -> float:
    """How often two equal recipes, ``seeds`` runs a side, differ by more than ``k`` standard
    errors by luck alone: P(|t| > k) for Student's t with 2 (seeds - 1) degrees of freedom, the
    distribution of (m_B - m_A) / SE when both sides have the same spread (Simpson's rule on its
    density). 11.6% for k = 2 at 3 seeds a side, 18.4% at 2; 4.6% for the normal curve."""
    if seeds < 2:
        raise ValueError(
            f"one run a side has no spread to judge by: seeds must be >= 2, got {seeds}"
        )
    df = 2 * (seeds - 1)
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def density(t: float) -> float:
        return scale * (1 + t * t / df) ** (-(df + 1) / 2)

    h = k / steps
    inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    return 1 - 2 * h / 3 * (density(0) + inner + density(k))


# ---------------------------------------------------------------------------- the ablations

ABLATION_BASELINE = "baseline: shortcut A, post-activation"


def ablation_runs(*, notes: list[str] | None = None) -> dict[str, list[History]]:
    """ResNet-20's ablations (chapter 7), ``{what the run changes: [History per seed]}``: first
    the baseline (the recorded ``degradation/resnet20``, :data:`ABLATION_BASELINE`), then each
    ``ablation/`` run under its description less "ablation of ResNet-20: ". Names without runs
    are left out; notes as in :func:`load_results`."""
    baseline = load_results("degradation/resnet20", notes=notes).get("degradation/resnet20", [])
    runs = {ABLATION_BASELINE: baseline}
    for name, hs in load_results("ablation", notes=notes).items():
        what = hs[0].meta.get("description", name).replace("ablation of ResNet-20: ", "")
        runs[what] = hs
    return {k: v for k, v in runs.items() if v}


def format_verdicts(verdicts: dict[str, dict], width: int = 77) -> str:
    """:func:`compare`'s verdicts: the name (names padded alike), the difference in points, the
    verdict and twice the standard error, on one line where it fits in ``width`` columns, else
    the numbers indented on the line under the name."""
    pad = max(map(len, verdicts), default=0)
    rows = []
    for name, v in verdicts.items():
        numbers = f"{100 * v['diff']:+5.1f} points ({v['verdict']}; 2 SE {200 * v['se']:.1f})"
        line = f"{name:{pad}s} {numbers}"
        rows.append(line if len(line) <= width else f"{name}\n    {numbers}")
    return "\n".join(rows)


# He et al. 2015, §4.2, CIFAR-10, as far as a TrainConfig says it. It is gpu_resnet20's recipe:
# batch 128, lr 0.1 divided by 10 at 32k and 48k of 64k iterations (182 epochs of the 351 batches
# of a 45k/5k split, divided at 50% and 75%), momentum 0.9 (not Nesterov), weight decay 1e-4 on
# every parameter, 4-pixel crops and flips, no label smoothing, one view at test time; in fp32,
# the paper's arithmetic (gpu_resnet20 takes the hardware's fastest). Not in a TrainConfig: the
# split (gpu_resnet20's ``validation``), the official data, and the paper's two GPUs.
PAPER_RECIPE = replace(EXPERIMENTS["gpu_resnet20"].config, precision="fp32")


def paper_protocol(train_images: int = 50_000) -> str:
    """What the paper's CIFAR-10 protocol holds beyond :data:`PAPER_RECIPE`, in one line: its
    epochs as iterations on its train/validation split (``train_images`` in all), and its test
    views."""
    held_out = EXPERIMENTS["gpu_resnet20"].validation
    kept = train_images - held_out
    steps = kept // PAPER_RECIPE.batch_size  # the last partial batch dropped
    return (
        f"paper: {PAPER_RECIPE.epochs} epochs of {steps} batches = "
        f"{PAPER_RECIPE.epochs * steps:,} iterations, schedule chosen on a "
        f"{kept:,}/{held_out:,} train/validation split; one view of each test image"
    )


# Fields that change how fast a run goes or how often it is tested, not what it computes; and
# the seed, which differs between runs of one recipe by design.
NOT_RECIPE = ("compile", "channels_last", "device", "eval_every", "seed")


def as_config(config: TrainConfig | dict) -> TrainConfig:
    """A record's ``meta["config"]`` (or a TrainConfig, as it is) as a TrainConfig; a field
    this version lacks is a clear error (a record of another resnet_lab version)."""
    if isinstance(config, TrainConfig):
        return config
    if not isinstance(config, dict):
        raise TypeError(f"expected a TrainConfig or a config dict, got {type(config).__name__}")
    unknown = sorted(set(config) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ValueError(
            f"config has fields that TrainConfig lacks: {unknown}; a record of another "
            "resnet_lab version? Read it with that version, or drop those keys"
        )
    return TrainConfig(**config)


def config_differences(
    a: TrainConfig | dict, b: TrainConfig | dict, *, ignore: tuple[str, ...] = NOT_RECIPE
) -> list[tuple[str, Any, Any]]:
    """``(field, a's value, b's value)`` for every field of :class:`TrainConfig` in which the
    recipes ``a`` and ``b`` differ, in the fields' order. Each is a TrainConfig or a config dict,
    such as a record's ``meta["config"]``, whose missing fields (added after the record was made)
    take their defaults. The fields in ``ignore`` (default :data:`NOT_RECIPE`: speed settings and
    the seed) are left out; ``ignore=()`` compares them all."""
    names = [f.name for f in fields(TrainConfig)]
    typos = sorted(set(ignore) - set(names))
    if typos:
        raise ValueError(f"ignore names no TrainConfig field: {typos}; choose among {names}")
    a, b = as_config(a), as_config(b)
    return [
        (n, getattr(a, n), getattr(b, n))
        for n in names
        if n not in ignore and getattr(a, n) != getattr(b, n)
    ]


def format_differences(rows: list[tuple[str, Any, Any]], left: str, right: str) -> str:
    """:func:`config_differences`' rows as a table of three columns: field, ``left``'s value and
    ``right``'s."""
    lines = [f"{'field':16s} {left:>8s} {right:>8s}"]
    lines += [f"{name:16s} {a!s:>8s} {b!s:>8s}" for name, a, b in rows]
    return "\n".join(lines)
