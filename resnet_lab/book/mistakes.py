"""What a trained network gets wrong, drawn: confusion matrices (one, or two side by side), the
pair of classes most confused, a grid of mistakes and a grid of predictions marked right or
wrong. Like :mod:`resnet_lab.book.viz`, nothing here trains or evaluates."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from resnet_lab.book.style import SMALL, TICKS, WIDTH, book_figure
from resnet_lab.book.viz import caption, show_images


def confusion_matrix(
    predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10
) -> torch.Tensor:
    """counts[i, j] = images of class i predicted as class j."""
    idx = labels.long() * num_classes + predictions.long()
    return torch.bincount(idx, minlength=num_classes**2).view(num_classes, num_classes)


def most_confused(counts: torch.Tensor) -> tuple[int, int, int]:
    """``(i, j, n)``: the two classes of a confusion matrix (``counts[true, predicted]``) most
    often taken for each other, counted both ways (i for j plus j for i), with ``i < j``."""
    both_ways = counts + counts.T
    both_ways.fill_diagonal_(0)
    i, j = divmod(int(both_ways.argmax()), len(counts))
    return min(i, j), max(i, j), int(both_ways[i, j])


@book_figure
def plot_confusion(
    counts: torch.Tensor | dict[str, torch.Tensor],
    classes: Sequence[str],
    *,
    source: str | None = None,
):
    """Row-normalised confusion matrix (each row: where the images of one class went); a dict
    ``{title: counts}`` draws one beside the other."""
    panels = counts if isinstance(counts, dict) else {"": counts}
    height = min(5.0, 1.4 + 0.8 * WIDTH / len(panels))  # square matrices, labels around them
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, height), squeeze=False)
    for ax, (title, c) in zip(axes.flat, panels.items()):
        frac = c.float() / c.sum(1, keepdim=True).clamp(min=1)
        im = ax.imshow(100 * frac.numpy(), cmap="Blues", vmin=0, vmax=100)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=TICKS)
        ax.set_yticks(range(len(classes)), classes, fontsize=TICKS)
        ax.set(xlabel="predicted", ylabel="true class", title=title)
        for i, j in np.ndindex(len(classes), len(classes)):
            v = 100 * frac[i, j].item()
            if v >= 1:
                color = "white" if v > 50 else "black"
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=SMALL, color=color)
    fig.colorbar(im, ax=list(axes.flat), label="% of the true class")
    if source:
        caption(fig, source)
    return fig


@book_figure
def show_mistakes(
    images: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    classes: Sequence[str],
    *,
    n: int = 16,
    source: str | None = None,
):
    """The first ``n`` images whose prediction is wrong, titled "true→predicted"; images
    (N, 3, H, W), labels and predictions (N,)."""
    wrong = torch.nonzero(predictions != labels).flatten()[:n]
    titles = [f"{classes[labels[i]]}→{classes[predictions[i]]}" for i in wrong]
    return show_images(images[wrong], ncols=8, titles=titles, source=source)


@book_figure
def show_predictions(
    images: torch.Tensor,
    predicted: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    *,
    source: str,
    ncols: int = 8,
):
    """A grid of uint8 images (N, 3, H, W), each titled with its predicted class, green when it
    is the true one, red with the true class in brackets when not (as in the PyTorch
    transfer-learning tutorial's ``visualize_model``)."""
    titles = [
        classes[int(p)] if p == y else f"{classes[int(p)]}\n({classes[int(y)]})"
        for p, y in zip(predicted, labels)
    ]
    fig = show_images(images, titles=titles, ncols=ncols)
    for ax, p, y in zip(fig.axes, predicted, labels):
        ax.title.set_color("#2e7d32" if p == y else "#c62828")
    caption(fig, source)
    return fig
