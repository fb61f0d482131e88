"""The speed runs' records, read back for the book's appendix.

:func:`cpu_runs` reads the CPU records (chapter 7's ResNet-20 and the speed runs),
:func:`epoch_costs` what an epoch of a run cost (compiling, small images), :func:`technique_runs`
the GPU sweep of the fast-training techniques by what each one is, and :func:`best_recipe` the
recipe of the best mean over its seeds. The ``*_line``, ``describe_*`` and ``format_*``
functions turn each into the lines the appendix prints; the appendix asserts its claims on what
these return.
"""

from __future__ import annotations

import statistics
import textwrap

from resnet_lab.checkpoints import History
from resnet_lab.config import low_res_epochs
from resnet_lab.lab.experiments import EXPERIMENTS
from resnet_lab.lab.results import as_config, config_differences, load_results, summarize

SPEED_RUNS = ("cpu_speedrun", "cpu_speedrun_plus", "cpu_speedrun_plus_long")
GOAL = 0.90  # the speed runs' goal: 90% test accuracy within 20 minutes


def cpu_runs(*, notes: list[str] | None = None) -> dict[str, list[History]]:
    """The recorded CPU runs, ``{experiment: [History per seed]}``: ``cpu_resnet20`` (chapter
    7's ResNet-20), then the :data:`SPEED_RUNS`; those not recorded are left out. Notes as in
    :func:`~resnet_lab.lab.results.load_results`."""
    return {
        name: hs
        for experiment in ("cpu_resnet20", *SPEED_RUNS)
        for name, hs in load_results(experiment, notes=notes).items()
    }


def fit(line: str) -> str:
    """``line`` wrapped to the page's 77 columns, its continuation indented."""
    return textwrap.fill(line, 77, subsequent_indent="  ")


def run_line(name: str, h: History) -> str:
    """Run ``h`` of experiment ``name`` in a sentence wrapped to 77 columns: its test accuracy,
    minutes of training and hardware; for a speed run, how far short of the :data:`GOAL` it
    fell."""
    acc = h.final["test_acc"]
    goal = f", {100 * (GOAL - acc):.1f} points short of 90%" if name in SPEED_RUNS else ""
    return fit(f"{name}: {acc:.2%} in {h.train_seconds / 60:.1f} min on {h.meta['hardware']}{goal}")


def epoch_costs(h: History) -> dict[str, float | None]:
    """Seconds an epoch of run ``h`` took: ``first`` (compiling included, with
    ``TrainConfig.compile``), and the median of the other epochs at full size (``full``) and at
    the low resolution of progressive resizing (``low_res``, None without it). The first epoch
    of each size is left out of its median: it compiles the network for that size."""
    small = low_res_epochs(as_config(h.meta.get("config", {})))
    secs = [r["seconds"] for r in h.epochs]
    full = secs[small + 1 :] or secs[small:] or secs  # a run all at low resolution: its epochs
    return {
        "first": secs[0],
        "full": statistics.median(full),
        "low_res": statistics.median(secs[1:small]) if small > 1 else None,
    }


def technique_runs(sweep: dict[str, list[History]]) -> dict[str, list[History]]:
    """The speed-run sweep's runs (``load_results("speedrun")``) by what each technique is (its
    experiment's description, less "speed-run technique: "), in the order the experiments are
    defined: the baseline, each technique alone, then all together."""
    return {
        EXPERIMENTS[name].description.removeprefix("speed-run technique: "): sweep[name]
        for name in EXPERIMENTS
        if name in sweep
    }


def best_recipe(runs: dict[str, list[History]], metric: str = "test_acc") -> str:
    """The name of the recipe of ``runs`` (``{experiment: [History per seed]}``) whose final
    ``metric``, averaged over its seeds, is highest: a recipe is judged by its mean, never by
    its luckiest seed."""
    means = {
        name: statistics.fmean(h.final[metric] for h in hs)
        for name, hs in runs.items()
        if hs and all(h.final.get(metric) is not None for h in hs)
    }
    if not means:
        raise ValueError(f"no recipe has a final {metric!r} in every run: pass tested runs")
    return max(means, key=means.get)


def compile_line(name: str, h: History) -> str:
    """Run ``h``'s first epoch against the median of the others of its size (the small ones
    with progressive resizing): the difference is what compiling cost."""
    cost = epoch_costs(h)
    same = cost["low_res"] or cost["full"]  # the size of the first epoch
    return fit(
        f"{name} seed {h.meta['seed']}: first epoch {cost['first']:.0f} s, the others of"
        f" its size {same:.0f} s (median), {cost['first'] - same:+.1f} s"
    )


def format_technique_diffs(
    acc: dict[str, tuple[float, float, int]], diffs: dict[str, dict], baseline: str
) -> str:
    """The baseline's accuracy (mean ± sd, n), then each technique's difference from it ± twice
    its standard error, in points, and its verdict, largest gain first (``acc`` from
    :func:`~resnet_lab.lab.results.summarize`, ``diffs`` from
    :func:`~resnet_lab.lab.results.compare`)."""
    m, sd, n = acc[baseline]
    lines = [f"unchanged recipe: {m:.2%} ± {sd:.2%} (n={n})"]
    for name in sorted(diffs, key=lambda k: -diffs[k]["diff"]):
        d = diffs[name]
        lines.append(
            fit(f"{100 * d['diff']:+.2f} ± {200 * d['se']:.2f} points ({d['verdict']}): {name}")
        )
    return "\n".join(lines)


def ema_span(h: History) -> tuple[float, float, int]:
    """Run ``h``'s weight average: its decay d, the steps it spans (1 / (1 - d)) and the run's
    steps in all (an epoch's images, its rate times its seconds, over the batch size)."""
    cfg = as_config(h.meta["config"])
    r = h.epochs[0]
    images = round(r["images_per_sec"] * r["seconds"])
    return cfg.ema, 1 / (1 - cfg.ema), len(h) * (images // cfg.batch_size)


def low_res_line(h: History) -> str:
    """What an epoch at progressive resizing's small size cost run ``h``, against one at full
    size (medians, :func:`epoch_costs`)."""
    cfg, cost = as_config(h.meta["config"]), epoch_costs(h)
    return fit(
        f"{h.meta['hardware']}: {low_res_epochs(cfg)} of {len(h)} epochs at"
        f" {cfg.low_res}x{cfg.low_res}, {cost['low_res']:.0f} s each; at 32x32"
        f" {cost['full']:.0f} s ({cost['low_res'] / cost['full']:.2f} of it, medians)"
    )


def describe_recipe(runs: list[History], start: History) -> str:
    """A recipe in lines, from its runs (one per seed): its final test accuracy over the seeds,
    its minutes of training and hardware, then every field of its recipe that differs from
    ``start``'s."""
    first = runs[0]
    name = first.meta["experiment"]
    m, sd, n = summarize({name: runs})[name]
    minutes = sorted(h.train_seconds / 60 for h in runs)
    spread = f" ± {sd:.2%}" if n > 1 else ""
    lines = [
        fit(
            f"{name}: {m:.2%}{spread} over {n} seed(s), {minutes[0]:.1f}-{minutes[-1]:.1f}"
            f" min of training on {first.meta['hardware']}"
        )
    ]
    for field, was, now in config_differences(start.meta["config"], first.meta["config"]):
        lines.append(f"  changed from {start.meta['experiment']}: {field} {was} -> {now}")
    return "\n".join(lines)


def full_epoch_line(h: History) -> str:
    """Run ``h``'s experiment, hardware, and the median seconds of its full-size epochs."""
    seconds = f"{h.meta['hardware']}: {epoch_costs(h)['full']:.0f} s per 32x32 epoch (median)"
    return f"{h.meta['experiment']}\n" + textwrap.fill(
        seconds, 77, initial_indent="  ", subsequent_indent="    "
    )
