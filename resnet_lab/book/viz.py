"""Figures from data: learning curves, image grids, per-layer gradients, records beside the paper.

What a trained network gets wrong (confusion matrices, mistakes, predictions) is drawn by
:mod:`resnet_lab.book.mistakes`.

Nothing here trains or evaluates; each function takes what the library returned and draws it.
Every figure gets a caption line saying what produced it (pass ``source=``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from resnet_lab.book.style import SMALL, TICKS, WIDTH, book_figure, grid_size
from resnet_lab.checkpoints import History

# He et al. 2015, Table 6: CIFAR-10 test error (%), official data, one view, 64k iterations at
# batch 128 (164 epochs of the 50k training images; the length was chosen on a 45k/5k split,
# which resnet_lab.lab.results.PAPER_RECIPE and gpu_resnet20 train on: 182 epochs of 45k).
# Each is one run, except ResNet-110: the best of 5 runs, whose mean the paper gives as 6.61 ± 0.16.
PAPER_ERRORS = {
    "resnet20": 8.75,
    "resnet32": 7.51,
    "resnet44": 7.17,
    "resnet56": 6.97,
    "resnet110": 6.43,  # best of 5
}
# Published CIFAR-10 test errors (%) to set beside a result: the paper's, and the README of a
# well-known reproduction (akamaster/pytorch_resnet_cifar10: 200 epochs, official data, one view)
REPRODUCTIONS = {
    "He et al. 2015, Table 6, one view": PAPER_ERRORS,
    "akamaster reproduction": {"resnet20": 8.27},
}


def caption(fig, text: str) -> None:
    """A small grey line under the figure, below every axis label and tick: what data, model,
    epochs, hardware and time made it."""
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    bottoms = [
        ax.get_tightbbox(renderer).transformed(to_fig).y0 for ax in fig.axes if ax.get_visible()
    ]
    bottoms += [leg.get_window_extent(renderer).transformed(to_fig).y0 for leg in fig.legends]
    bottom = min([0.0, *bottoms])
    fig.text(
        0.01, bottom - 0.03, text, ha="left", va="top", fontsize=SMALL, color="0.35", wrap=True
    )


def history_caption(h: History) -> str:
    m = h.meta
    when = m.get("finished") or m.get("started", "")
    return (
        f"{m.get('model', '?')}, {len(h)} epochs, {h.train_seconds / 60:.1f} min of training on "
        f"{m.get('hardware', '?')} ({m.get('device', '?')}), {when}. Data: {m.get('data', '?')}"
    )


@book_figure
def plot_history(
    histories: History | Sequence[History],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    source: str | None = None,
):
    """Loss and accuracy curves (train dashed, test solid) of one or more runs."""
    if isinstance(histories, History):
        histories = [histories]
    labels = (
        list(labels)
        if labels is not None
        else [h.meta.get("model", f"run {i}") for i, h in enumerate(histories)]
    )
    many = len(histories) > 2  # then one legend under both panels, where it hides no curve
    ncol = 2 if max(map(len, labels)) <= 40 else 1  # two long labels side by side: too wide
    rows = -(-len(histories) // ncol)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(WIDTH, 3.6 + (0.3 * rows if many else 0)))
    for h, label, color in zip(
        histories, labels, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3
    ):
        ep = h["epoch"]
        ax_loss.plot(ep, h["train_loss"], "--", color=color, alpha=0.8)
        ax_acc.plot(ep, [100 * a for a in h["train_acc"]], "--", color=color, alpha=0.8)
        test = [(e, lo, a) for e, lo, a in zip(ep, h["test_loss"], h["test_acc"]) if a is not None]
        if test:
            e, lo, a = zip(*test)
            ax_loss.plot(e, lo, "-o", ms=3, color=color, label=label)
            ax_acc.plot(e, [100 * x for x in a], "-o", ms=3, color=color, label=label)
        else:
            ax_loss.plot([], [], "-", color=color, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss (dashed: train, solid: test)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (dashed: train, solid: test)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if not many:
            ax.legend()
    if title:
        fig.suptitle(title)
    if many:
        fig.tight_layout(rect=(0, 0.07 * rows, 1, 1))
        fig.legend(
            *ax_acc.get_legend_handles_labels(),
            loc="lower center",
            ncol=ncol,
            frameon=False,
            bbox_to_anchor=(0.5, 0),
        )
    else:
        fig.tight_layout()
    caption(
        fig, source if source is not None else "; ".join(history_caption(h) for h in histories[:2])
    )
    return fig


@book_figure
def plot_training_error(runs: Mapping[str, History], *, source: str | None = None):
    """Training error (%) per epoch of each run, plain networks (names starting "plain") dashed,
    residual ones solid: He et al.'s Figure 1 (left), from ``runs`` of
    :meth:`~resnet_lab.book.widgets.TrainingRace.run` or any ``{name: History}``."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for name, h in runs.items():
        ax.plot(
            h["epoch"],
            [100 * (1 - a) for a in h["train_acc"]],
            "--" if name.startswith("plain") else "-",
            marker="o",
            ms=3,
            label=name,
        )
    ax.set(
        xlabel="epoch",
        ylabel="training error (%)",
        title="training error: plain (dashed) vs residual (solid)",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    caption(fig, source if source is not None else history_caption(next(iter(runs.values()))))
    return fig


@book_figure
def show_images(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    source: str | None = None,
):
    """A grid of images: uint8 (N, 3, H, W), or floats in [0, 1], across the book's column,
    each under its title (``titles``, or the class name of its label)."""
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        images = images.float() / 255
    n = len(images)
    nrows = -(-n // ncols)
    if titles is None and labels is not None and classes is not None:
        titles = [classes[int(y)] for y in labels]
    lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles else 0
    title_in = lines * SMALL * 1.3 / 72  # the height of the titles' lines, in inches
    width, height = grid_size(nrows, ncols, title=title_in)
    fig = plt.figure(figsize=(width, height))
    cell, gap = width / ncols, 0.04  # inches; gap: the white between two images
    for i in range(n):
        r, c = divmod(i, ncols)
        bottom = height - (r + 1) * (cell + title_in) + gap / 2
        box = (c * cell + gap / 2, bottom, cell - gap, cell - gap)
        ax = fig.add_axes([box[0] / width, box[1] / height, box[2] / width, box[3] / height])
        ax.axis("off")
        ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=SMALL, pad=2)
    if source:
        caption(fig, source)
    return fig


@book_figure
def plot_lr_schedules(
    curves: dict[str, Sequence[float]], *, steps_per_epoch: int, source: str | None = None
):
    """Learning rate per optimiser step, one line per schedule (``{label: [lr per step]}``),
    against epochs."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    for label, lrs in curves.items():
        ax.plot(np.arange(len(lrs)) / steps_per_epoch, lrs, label=label)
    ax.set(xlabel="epoch", ylabel="learning rate")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if source:
        caption(fig, source)
    return fig


@book_figure
def plot_layer_values(
    series: dict[str, Sequence[float]],
    *,
    ylabel: str,
    title: str = "",
    log: bool = True,
    source: str | None = None,
    ax=None,
):
    """One line per network: a value per layer (gradient norms, activation std), input to output."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, "-o", ms=2.5, label=label)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="layer (input → output)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if fig is not None:
        fig.tight_layout()
        if source:
            caption(fig, source)
    return fig or ax.figure


def runs_caption(runs: dict[str, Sequence[History]]) -> str:
    """What produced a figure of recorded runs: models, seeds, epochs, data, hardware, minutes."""
    hs = [h for group in runs.values() for h in group]
    if not hs:
        return "no recorded runs"
    m = hs[0].meta
    minutes = sum(h.train_seconds for h in hs) / 60
    hardware = sorted({h.meta.get("hardware", "?") for h in hs})
    seeds = sorted({h.meta.get("seed", 0) for h in hs})
    lengths = sorted({len(h) for h in hs})
    epochs = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
    shared = sum(1 for h in hs if h.meta.get("cpu_shared") or h.meta.get("gpu_shared_by"))
    shared_note = (
        f" ({shared} of the runs shared the machine: their minutes overstate)" if shared else ""
    )
    return (
        f"{len(hs)} recorded runs ({', '.join(runs)}; seeds {seeds}), {epochs} epochs each, "
        f"{minutes:.0f} min of training in all on {'; '.join(hardware)}{shared_note}. "
        f"Data: {m.get('data', '?')}"
    )


@book_figure
def plot_seed_bands(
    runs: dict[str, Sequence[History]],
    metric: str = "train_acc",
    *,
    error: bool = True,
    ylabel: str | None = None,
    title: str = "",
    source: str | None = None,
    styles=None,
):
    """Mean over seeds per epoch as a line, ± one standard deviation as a band, for each
    experiment in ``runs`` (``{name: [History per seed]}``).
    ``error=True`` plots 100 x (1 - metric)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for name, hs in runs.items():
        rows = [[r.get(metric) for r in h.epochs] for h in hs]
        n = min(len(r) for r in rows)
        vals = np.array([[np.nan if v is None else v for v in r[:n]] for r in rows], dtype=float)
        if error:
            vals = 100 * (1 - vals)
        mean, sd = np.nanmean(vals, 0), (np.nanstd(vals, 0, ddof=1) if len(hs) > 1 else np.zeros(n))
        epochs = np.arange(1, n + 1)
        style = (styles or {}).get(name, "-")
        (line,) = ax.plot(epochs, mean, style, label=f"{name} (n={len(hs)})")
        ax.fill_between(epochs, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
    ax.set(
        xlabel="epoch", ylabel=ylabel or (f"{metric} error (%)" if error else metric), title=title
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    caption(fig, source if source is not None else runs_caption(runs))
    return fig


@book_figure
def plot_mean_sd(
    summary: dict[str, tuple[float, float, int]],
    *,
    ylabel: str,
    title: str = "",
    source: str,
    reference: dict[str, float] | None = None,
    scale: float = 100.0,
):
    """Horizontal bars of mean ± sd (``{label: (mean, sd, n)}``, as from
    :func:`resnet_lab.lab.results.summarize`), with the number of runs; ``reference`` adds
    published values as black diamonds."""
    labels = list(summary)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.45 * len(labels) + 1.4))
    y = np.arange(len(labels))
    means = [scale * summary[k][0] for k in labels]
    sds = [scale * summary[k][1] for k in labels]
    ax.barh(y, means, xerr=sds, capsize=4, color="#9fc5e8", edgecolor="0.3")
    for yi, k, m, s in zip(y, labels, means, sds):
        ax.text(
            m + s + 0.3, yi, f"{m:.1f} ± {s:.1f} (n={summary[k][2]})", va="center", fontsize=SMALL
        )
    for k, v in (reference or {}).items():
        if k in labels:
            ax.plot(v, labels.index(k), "kD", ms=5, label="published")
    ax.set_yticks(y, labels, fontsize=TICKS)
    ax.invert_yaxis()
    ax.set(xlabel=ylabel, title=title)
    ax.set_xlim(0, max(m + s for m, s in zip(means, sds)) * 1.25)
    ax.grid(alpha=0.3, axis="x")
    if reference:
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[:1], names[:1], loc="lower right")
    fig.tight_layout()
    caption(fig, source)
    return fig


@book_figure
def plot_differences(
    comparison: dict[str, dict], *, xlabel: str, title: str = "", source: str, scale: float = 100.0
):
    """Differences from a baseline (``{label: {"diff", "se", "verdict", "n"}}``, as from
    :func:`resnet_lab.lab.results.compare`): a dot at the difference of the means, whiskers of
    twice its standard error, and the verdict. A whisker that crosses zero is noise."""
    labels = list(comparison)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.42 * len(labels) + 1.5))
    y = np.arange(len(labels))
    diffs = np.array([scale * comparison[k]["diff"] for k in labels])
    whisk = np.nan_to_num(
        [2 * scale * comparison[k]["se"] for k in labels]
    )  # no spread: no whisker
    verdict_color = {"better": "#2e7d32", "worse": "#c62828"}
    colors = [verdict_color.get(comparison[k]["verdict"], "0.4") for k in labels]
    ax.axvline(0, color="0.2", lw=1)
    ax.errorbar(diffs, y, xerr=whisk, fmt="none", ecolor="0.5", capsize=3)
    ax.scatter(diffs, y, c=colors, zorder=3)
    right = np.nanmax(diffs + whisk)
    for yi, k in zip(y, labels):
        ax.text(
            right + 0.1 * scale / 100,
            yi,
            f"{comparison[k]['verdict']} (n={comparison[k]['n']})",
            va="center",
            fontsize=SMALL,
        )
    ax.set_yticks(y, labels, fontsize=TICKS)
    ax.invert_yaxis()
    left = np.nanmin(diffs - whisk)
    ax.set_xlim(min(left, 0) - 0.2 * scale / 100, right + 1.6 * scale / 100)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    caption(fig, source)
    return fig


@book_figure
def plot_transfer(
    summary: dict[tuple[str, int], tuple[float, float, int]],
    methods: Sequence[str],
    *,
    source: str,
    title: str = "adapting to the 4 vehicle classes",
):
    """Test accuracy (%) against labelled images per class (log scale), one line per method:
    mean ± sd over seeds, from ``{(method, labels_per_class): (mean, sd, n)}`` (as from
    :func:`resnet_lab.lab.transfer.transfer_summary`). The methods are nudged apart sideways."""
    budgets = sorted({b for _, b in summary})
    fig, ax = plt.subplots(figsize=(WIDTH, 4))
    for i, method in enumerate(methods):
        pts = [(b, *summary[(method, b)]) for b in budgets if (method, b) in summary]
        if not pts:
            continue
        b, mean, sd, _ = zip(*pts)
        nudge = 1 + 0.04 * (i - (len(methods) - 1) / 2)
        ax.errorbar(
            [x * nudge for x in b],
            [100 * m for m in mean],
            yerr=[100 * s for s in sd],
            marker="o",
            capsize=4,
            label=method,
        )
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set(
        xlabel="labelled training images per class (log scale)",
        ylabel="test accuracy (%)",
        title=title,
    )
    ax.axhline(25, color="0.5", lw=0.8, ls=":")
    ax.text(budgets[0], 26, "chance", fontsize=SMALL, color="0.4")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    caption(fig, source)
    return fig
