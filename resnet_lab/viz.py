"""Figures from data: learning curves, image grids, confusion matrices, per-layer gradients.

Nothing here trains or evaluates; each function takes what the library returned and draws it.
Every figure gets a caption line saying what produced it (pass ``source=``).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from resnet_lab.train import History

PAPER_ERRORS = {  # He et al. 2015, Table 6: CIFAR-10 test error (%), official data, 164 epochs
    "resnet20": 8.75,
    "resnet32": 7.51,
    "resnet44": 7.17,
    "resnet56": 6.97,
    "resnet110": 6.43,
}


def caption(fig, text: str) -> None:
    """A small grey line under the figure, below every axis label and tick: what data, model,
    epochs, hardware and time made it."""
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    bottoms = [ax.get_tightbbox(renderer).transformed(to_fig).y0 for ax in fig.axes if ax.get_visible()]
    bottom = min([0.0, *bottoms])
    fig.text(0.01, bottom - 0.03, text, ha="left", va="top", fontsize=8, color="0.35", wrap=True)


def history_caption(h: History) -> str:
    m = h.meta
    when = m.get("finished") or m.get("started", "")
    return (
        f"{m.get('model', '?')}, {len(h)} epochs, {h.train_seconds / 60:.1f} min of training on "
        f"{m.get('hardware', '?')} ({m.get('device', '?')}), {when}. Data: {m.get('data', '?')}"
    )


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
    labels = list(labels) if labels is not None else [h.meta.get("model", f"run {i}") for i, h in enumerate(histories)]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for h, label, color in zip(histories, labels, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3):
        ep = h["epoch"]
        ax_loss.plot(ep, h["train_loss"], "--", color=color, alpha=0.8)
        ax_acc.plot(ep, [100 * a for a in h["train_acc"]], "--", color=color, alpha=0.8)
        test = [(e, l, a) for e, l, a in zip(ep, h["test_loss"], h["test_acc"]) if a is not None]
        if test:
            e, l, a = zip(*test)
            ax_loss.plot(e, l, "-o", ms=3, color=color, label=label)
            ax_acc.plot(e, [100 * x for x in a], "-o", ms=3, color=color, label=label)
        else:
            ax_loss.plot([], [], "-", color=color, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss (dashed: train, solid: test)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (dashed: train, solid: test)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    caption(fig, source if source is not None else "; ".join(history_caption(h) for h in histories[:2]))
    return fig


def show_images(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    source: str | None = None,
    scale: float = 1.2,
):
    """A grid of images: uint8 (N, 3, H, W), or floats in [0, 1]."""
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        images = images.float() / 255
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
        elif labels is not None and classes is not None:
            ax.set_title(classes[int(labels[i])], fontsize=7)
    fig.tight_layout()
    if source:
        caption(fig, source)
    return fig


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """counts[i, j] = images of class i predicted as class j."""
    idx = labels.long() * num_classes + predictions.long()
    return torch.bincount(idx, minlength=num_classes**2).view(num_classes, num_classes)


def plot_confusion(counts: torch.Tensor, classes: Sequence[str], *, source: str | None = None):
    """Row-normalised confusion matrix (each row: where the images of one class went)."""
    frac = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(100 * frac.numpy(), cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true class")
    for i in range(len(classes)):
        for j in range(len(classes)):
            v = 100 * frac[i, j].item()
            if v >= 1:
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v > 50 else "black")
    fig.colorbar(im, ax=ax, label="% of the true class")
    fig.tight_layout()
    if source:
        caption(fig, source)
    return fig


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
        fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, "-o", ms=2.5, label=label)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="layer (input → output)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if fig is not None:
        fig.tight_layout()
        if source:
            caption(fig, source)
    return fig or ax.figure


def results_table_figure(rows: Sequence[tuple[str, float | None, float]], *, source: str):
    """Bar chart of test error: ours (from results/*.json) next to the paper's."""
    names = [r[0] for r in rows]
    ours = [np.nan if r[1] is None else r[1] for r in rows]
    paper = [r[2] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(x - 0.2, ours, 0.4, label="this book's run")
    ax.bar(x + 0.2, paper, 0.4, label="He et al. 2015 (Table 6)")
    ax.set_xticks(x, names)
    ax.set_ylabel("test error (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    caption(fig, source)
    return fig

