"""Testing a network: loss and accuracy over a loader, logits in order, test-time augmentation.

``evaluate(model, loader)`` gives the mean cross-entropy and the accuracy in eval mode;
``tta=True`` averages each image's logits with its mirror image's, ``tta_translate`` adds
1-pixel shifts (as airbench does); ``predict`` returns every image's logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.device import autocast_context
from resnet_lab.loader import CifarLoader


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate images by (dy, dx) pixels, filling with zeros (the padding used in training)."""
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def tta_logits(
    model: nn.Module, x: torch.Tensor, *, flip: bool = True, translate: bool = False
) -> torch.Tensor:
    """Logits averaged over test-time views: the image and its mirror image (``flip``), and with
    ``translate`` also both shifted one pixel up-left and down-right, weighted as airbench does
    (Jordan 2024): half on the untranslated views, a quarter on each translation."""

    def views(img):
        out = model(img).float()
        return 0.5 * (out + model(img.flip(3)).float()) if flip else out

    logits = views(x)
    if translate:
        logits = 0.5 * logits + 0.25 * (views(_shift(x, -1, -1)) + views(_shift(x, 1, 1)))
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: CifarLoader,
    *,
    tta: bool = False,
    tta_translate: bool = False,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (in eval mode).

    ``tta=True`` averages the logits of each image and its mirror image; ``tta_translate``
    adds 1-pixel translations (see :func:`tta_logits`).
    """
    was_training = model.training
    model.eval()
    device = loader.device
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    try:
        with autocast_context(device, precision):
            for x, y in loader:
                logits = tta_logits(model, x, flip=tta, translate=tta_translate)
                total_loss += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
                n += len(y)
    finally:
        model.train(was_training)
    return total_loss.item() / max(n, 1), correct.item() / max(n, 1)


@torch.no_grad()
def predict(model: nn.Module, loader: CifarLoader, *, tta: bool = False) -> torch.Tensor:
    """Logits for every image of ``loader`` in order, on the CPU: (N, num_classes)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([tta_logits(model, x, flip=tta).cpu() for x, _ in loader])
    finally:
        model.train(was_training)
