"""Reading the transfer study's records back: what chapter 8 and its appendix print, plot and
check.

:func:`~resnet_lab.lab.transfer.load_transfer` reads the records and
:func:`~resnet_lab.lab.transfer.transfer_summary` gives the mean and spread of each method at each
budget; here :func:`transfer_caption` says where the figure's numbers come from,
:func:`runs_by_setting` and :func:`chose_best` read the recipe each run chose and check it is
the best of its validation scores, :func:`comparison_tables` judges every method against a
baseline at every budget (:func:`~resnet_lab.lab.results.compare`), and the ``format_*`` functions
turn each into the lines the chapter prints (:func:`format_grids`, the recipes the study
chooses from). The chapter asserts its claims on what these
return.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from resnet_lab.checkpoints import History
from resnet_lab.lab.probe import best_candidate
from resnet_lab.lab.results import compare
from resnet_lab.lab.transfer import NETWORK_METHODS, TRANSFER, TRANSFER_METHODS, TransferStudy

Summary = dict[tuple[str, int], tuple[float, float, int]]


def format_grids(study: TransferStudy = TRANSFER) -> str:
    """The recipes each method of ``study`` chooses from: the probe's L2 strengths and views,
    and its folds; each network method's learning rates and steps, and its held-out fold."""
    l2s = ", ".join(f"{l2:.0e}" for l2 in study.probe_l2)
    lines = [
        textwrap.fill(f"linear_probe: L2 in {l2s};", 77, subsequent_indent="  "),
        f"  views per image {study.probe_views}; {study.folds}-fold cross-validation",
    ]
    longer = f"then {study.long_steps} steps at the best; " if study.long_steps else ""
    lines += [
        f"{method}: lr {study.lrs(method)} at {study.steps} steps,\n  {longer}"
        f"1 fold of {study.folds} held out"
        for method in NETWORK_METHODS
    ]
    return "\n".join(lines)


def transfer_caption(records: list[dict], pretrained: History | None) -> str:
    """The transfer figure's caption: how many runs and seeds, how the recipes were chosen, the
    pretraining (``pretrained``'s summary, None when it is not recorded), the minutes the runs
    took (and a warning when some shared the CPU), the hardware and the commit."""
    meta = records[0]["meta"]
    minutes = sum(r["meta"]["minutes"] for r in records)
    shared = sum(1 for r in records if r["meta"].get("cpu_shared"))
    n_seeds = len({r["seed"] for r in records})
    cost = f"{minutes:.0f} min in all, choosing the recipes included"
    if shared:
        cost += f" ({shared} runs shared the CPU with other jobs: their minutes overstate)"
    source = " ".join(pretrained.summary().split()) if pretrained else "see results/transfer/"
    return (
        f"Recorded in transfer.json: {len(records)} runs, mean ± sd over {n_seeds} seeds;"
        " each method's recipe chosen on its labelled images;"
        f" ResNet-20 pretrained on the 6 animal classes ({source});"
        f" {cost}, on {meta['hardware']}; commit {meta['commit']}."
    )


def format_summary(summary: Summary) -> str:
    """One line per (method, labels per class): test accuracy, mean ± sd (%), and the count."""
    return "\n".join(
        f"{method:15s} {b:4d}/class: {100 * m:5.1f} ± {100 * s:.1f}%  (n={n})"
        for (method, b), (m, s, n) in summary.items()
    )


def runs_by_setting(records: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """``{(method, labels_per_class): [record per seed]}``, settings sorted, seeds in order."""
    picks: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        picks.setdefault((r["method"], r["labels_per_class"]), []).append(r)
    return {k: sorted(picks[k], key=lambda r: r["seed"]) for k in sorted(picks)}


def recipe_text(record: dict) -> str:
    """The recipe a run chose, in a few words: the probe's L2 and views, a network's lr and
    steps."""
    c = record["recipe"]
    if record["method"] == "linear_probe":
        return f"L2 {c['l2']:.0e}, {c['views']} view(s)"
    return f"lr {c['lr']:g}, {c['steps']} steps"


def format_recipes(picks: dict[tuple[str, int], list[dict]]) -> str:
    """One entry per setting of :func:`runs_by_setting`: each seed's recipe, and how the recipes
    were chosen (the records' ``selection["by"]``: folds and images), wrapped to 77 columns."""
    return "\n".join(
        textwrap.fill(
            f"{method:15s} {b:4d}/class: {'; '.join(map(recipe_text, runs))}"
            f" ({runs[0]['selection']['by']})",
            77,
            subsequent_indent=" " * 4,
        )
        for (method, b), runs in picks.items()
    )


def chose_best(record: dict) -> bool:
    """Whether the run's recipe is the setting of the best of its validation scores
    (:func:`~resnet_lab.lab.probe.best_candidate`: highest accuracy, ties to the lower loss). A run
    with one candidate only scored none, and counts as chosen."""
    candidates = record["selection"]["candidates"]
    if not candidates:
        return record["selection"]["by"] == "one candidate"
    top = best_candidate(candidates)
    setting = {k: v for k, v in top.items() if not k.startswith("val_")}
    return all(record["recipe"].get(k) == v for k, v in setting.items())


def comparison_tables(
    summary: Summary, bases: Sequence[str], methods: Sequence[str] = TRANSFER_METHODS
) -> dict[str, dict[int, dict[str, dict]]]:
    """``{baseline: {labels_per_class: {method: comparison}}}``: every other method of
    ``methods`` against each of ``bases`` at every budget of ``summary``, by
    :func:`~resnet_lab.lab.results.compare` (the difference of the means, its standard error, and a
    verdict)."""
    budgets = sorted({b for _, b in summary})
    tables = {}
    for base in bases:
        tables[base] = {}
        for b in budgets:
            here = {m: summary[(m, b)] for m in methods if (m, b) in summary}
            tables[base][b] = compare(here, base)
    return tables


def format_comparisons(tables: dict[str, dict[int, dict[str, dict]]]) -> str:
    """:func:`comparison_tables` as lines: per baseline, per budget, each method's difference
    ± its standard error (points), and its verdict, one method to a line."""
    lines = []
    for base, table in tables.items():
        lines.append(f"minus {base}, points ± standard error of the difference:")
        for b, row in table.items():
            lines.append(f"{b:4d}/class:")
            lines += [
                f"    {m:15s} {100 * c['diff']:+5.1f} ± {100 * c['se']:3.1f} {c['verdict']}"
                for m, c in row.items()
            ]
    return "\n".join(lines)


def chosen_steps(
    picks: dict[tuple[str, int], list[dict]], method: str = "scratch"
) -> dict[int, set[int]]:
    """``{labels_per_class: {steps chosen}}`` of ``method``'s runs, from :func:`runs_by_setting`:
    the schedules it chose, over seeds."""
    return {
        b: {r["recipe"]["steps"] for r in runs} for (m, b), runs in picks.items() if m == method
    }
