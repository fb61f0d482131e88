"""Reading the recorded runs back: what the book's figures and tables show.

:func:`load_results` reads a sweep's Histories (the book's records, and, installed, the
reader's own beside them, :mod:`resnet_lab.records`), :func:`summarize` gives the mean and
standard deviation over seeds of a final metric, :func:`compare` judges each configuration
against a baseline by the standard error of the difference, and :func:`config_differences`
lists how two recipes differ, field by field.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from resnet_lab.checkpoints import History
from resnet_lab.experiments import experiment_names, result_path
from resnet_lab.records import record_dirs
from resnet_lab.records import results_dir as book_results_dir


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
