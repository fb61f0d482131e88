"""What a network's features keep of its input: the effective rank of each block's features
(how many directions the images still spread along), and linear probes of each stage of a
trained network (how linearly separable its classes are there).

>>> block_feature_ranks(cifar_resnet(56), images)          # doctest: +SKIP
>>> stage_probe_accuracy(model, data, l2=1e-2)              # doctest: +SKIP
"""

from __future__ import annotations

from copy import deepcopy

import torch
from torch import nn

from resnet_lab.cifar10 import CifarData
from resnet_lab.evaluation import eval_mode
from resnet_lab.lab.probe import fit_linear_head
from resnet_lab.loader import CifarLoader
from resnet_lab.models import ResNet


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of ``features``
    (N, d), centred over the N rows (Roy and Vetterli 2007): d when the
    rows spread evenly along d directions, 1 when they lie on one line."""
    s = torch.linalg.svdvals((features - features.mean(0)).double())
    p = s / s.sum()
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).item()


@torch.no_grad()
def block_feature_ranks(model: ResNet, images: torch.Tensor) -> list[float]:
    """The :func:`effective_rank` of each block's output, averaged over its pixels, for one
    batch of normalised ``images`` (B, 3, 32, 32): one number per block, input to output.
    BN uses the batch's statistics, as in training, on a copy: the model itself, its mode and its
    running statistics are left as they were."""
    pooled: list[torch.Tensor] = []
    copy = deepcopy(model).train()
    for b in copy.blocks():
        b.register_forward_hook(lambda m, args, out: pooled.append(out.mean((2, 3))))
    copy(images)
    return [effective_rank(p) for p in pooled]


@torch.no_grad()
def stage_features(model: ResNet, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The pixel-averaged features of uint8 ``images`` (N, 3, 32, 32) after the stem and
    after each stage of a CIFAR ``model`` in eval mode: {"stem": (N, 16), "stage 1": (N, 16),
    "stage 2": (N, 32), "stage 3": (N, 64)} at the paper's width."""
    labels = torch.zeros(len(images), dtype=torch.long)  # unused: the loader wants some
    loader = CifarLoader(images, labels, 500, train=False, device="cpu")
    out: dict[str, list[torch.Tensor]] = {"stem": []}
    with eval_mode(model):
        for x, _ in loader:
            x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            out["stem"].append(x.mean((2, 3)))
            for i, stage in enumerate(model.stages(), 1):
                x = stage(x)
                out.setdefault(f"stage {i}", []).append(x.mean((2, 3)))
    return {k: torch.cat(v) for k, v in out.items()}


def stage_probe_accuracy(
    model: nn.Module,
    data: CifarData,
    l2: float = 1e-2,
) -> dict[str, float]:
    """Test accuracy of a linear probe (``fit_linear_head``, L2 strength
    ``l2``) on each stage's :func:`stage_features`: fit on ``data``'s
    training images, scored on its test images: {"stem": acc, ...}."""
    train = stage_features(model, data.train_images)
    test = stage_features(model, data.test_images)
    accs = {}
    for name, x in train.items():
        fit = fit_linear_head(x, data.train_labels, 10, l2)
        guess = (test[name] @ fit.weight.T + fit.bias).argmax(1)
        accs[name] = (guess == data.test_labels).float().mean().item()
    return accs
