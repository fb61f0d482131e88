"""Testing a network: loss and accuracy over a loader, logits in order, test-time augmentation.

``evaluate(model, loader)`` gives the mean cross-entropy and the accuracy in eval mode;
``tta=True`` averages each image's logits with its mirror image's, ``tta_translate`` adds
1-pixel shifts (as airbench does); ``predict`` returns every image's logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.device import autocast_context
from resnet_lab.loader import CifarLoader


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode and without gradients inside the block; afterwards every module
    is back in its own mode (a frozen BN that was in eval mode stays so), whatever happened."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training


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
    device = loader.device
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    with eval_mode(model), autocast_context(device, precision):
        for x, y in loader:
            logits = tta_logits(model, x, flip=tta, translate=tta_translate)
            total_loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
    return total_loss.item() / max(n, 1), correct.item() / max(n, 1)


def predict(model: nn.Module, loader: CifarLoader, *, tta: bool = False) -> torch.Tensor:
    """Logits for every image of ``loader`` in order, on the CPU: (N, num_classes)."""
    with eval_mode(model):
        return torch.cat([tta_logits(model, x, flip=tta).cpu() for x, _ in loader])
