"""A linear probe fit to convergence: a frozen network's pooled features, an L2-regularised
logistic regression on them (full-batch L-BFGS), and its L2 strength, and whether to fit on
augmented views of the images too, chosen by k-fold cross-validation on the labelled images
alone.

This is how linear evaluation is usually done (Kornblith et al. 2019 fit logistic regression by
L-BFGS, the L2 strength chosen on held-out data): a linear head trained for a fixed number of
SGD steps with augmentation, like a whole network, stays under-trained.

>>> x = augmented_features(model, data.train_images, 8)             # doctest: +SKIP
>>> recipe, how = choose_probe(x, data.train_labels, 4, L2_GRID, (1, 8))  # cross-validated
>>> fit = fit_linear_head(x[: recipe["views"]].flatten(0, 1),         # on all of them
...                       data.train_labels.repeat(recipe["views"]), 4, recipe["l2"])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.evaluation import eval_mode
from resnet_lab.loader import CifarLoader, random_crop_flip

L2_GRID = tuple(10 ** (k / 2) for k in range(-10, 1))  # 1e-5 ... 1, half a decade apart


@torch.no_grad()
def pooled_features(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """What ``model``'s head (``model.fc``) sees: the pooled backbone features of uint8
    ``images`` (N, 3, H, W) -> (N, d), fp32 on the CPU; the network in eval mode, the images
    CIFAR-normalised and not augmented."""
    device = model.fc.weight.device
    labels = torch.zeros(len(images), dtype=torch.long)  # unused: the loader wants some
    loader = CifarLoader(images, labels, batch_size, train=False, device=device)
    seen: list[torch.Tensor] = []
    handle = model.fc.register_forward_pre_hook(lambda m, args: seen.append(args[0].float()))
    try:
        with eval_mode(model):
            for x, _ in loader:
                model(x)
    finally:
        handle.remove()
    return torch.cat(seen).cpu()


@dataclass
class LinearFit:
    """A logistic regression fit by :func:`fit_linear_head`: ``weight`` (k, d) and ``bias`` (k,)
    act on raw features; ``iterations`` of L-BFGS, and the largest gradient entry left at the
    end (``converged``: below the tolerance)."""

    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    iterations: int
    grad_max: float
    converged: bool


def fit_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    l2: float,
    *,
    max_iter: int = 2000,
    tol: float = 1e-6,
) -> LinearFit:
    """L2-regularised logistic regression, fit to convergence.

    Minimises the mean cross-entropy plus ``l2`` x the squared
    weights (not the bias) over ``features`` (N, d) standardised by
    their own mean and std, by full-batch L-BFGS in float64. Convex:
    no seed, one optimum. The standardisation is folded into the
    returned weight and bias, which act on raw features.
    """
    x = features.double()
    mean, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z, y = (x - mean) / sd, labels.long()
    shape = (num_classes, x.shape[1])
    w = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=tol,
        tolerance_change=0,
        line_search_fn="strong_wolfe",
    )

    def loss_fn():
        opt.zero_grad()
        ce = F.cross_entropy(z @ w.T + b, y)
        loss = ce + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(loss_fn)
        loss_fn()  # the gradient where it stopped
    grad = max(w.grad.abs().max().item(), b.grad.abs().max().item())
    weight = (w / sd).detach()
    bias = (b - weight @ mean).detach()
    n_iter = opt.state[w]["n_iter"]
    ok = grad <= tol
    return LinearFit(weight.float(), bias.float(), l2, n_iter, grad, ok)


def fold_ids(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """Class-balanced folds: the fold (0 .. k-1) of each image, k = ``folds``, or fewer when a
    class has fewer images; each class is shuffled by ``seed`` and dealt out in turn."""
    counts = torch.bincount(labels)
    fewest = int(counts[counts > 0].min())
    if fewest < 2:
        raise ValueError(
            "choosing a recipe needs at least 2 labelled images per class "
            f"(to hold some out), got {fewest}"
        )
    k = min(folds, fewest)
    g = torch.Generator().manual_seed(seed)
    ids = torch.empty_like(labels)
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        ids[members] = torch.arange(len(members)) % k
    return ids


def best_candidate(candidates: list[dict]) -> dict:
    """The candidate of highest ``val_acc``; of equal accuracies, the
    one of lowest ``val_loss``, then the first listed."""
    return max(candidates, key=lambda c: (c["val_acc"], -c["val_loss"]))


def augmented_features(
    model: nn.Module, images: torch.Tensor, views: int, seed: int = 0
) -> torch.Tensor:
    """:func:`pooled_features` of ``views`` versions of each image: the image itself, then
    ``views - 1`` random crops and flips (those the trainer draws), seeded by ``seed``:
    (views, N, d)."""
    g = torch.Generator().manual_seed(seed)
    versions = [images] + [random_crop_flip(images, g) for _ in range(views - 1)]
    return torch.stack([pooled_features(model, v) for v in versions])


def choose_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2_grid,
    views_grid=(1,),
    *,
    folds: int = 5,
    seed: int = 0,
) -> tuple[dict, dict]:
    """The probe's recipe that k-fold cross-validation prefers: an L2 strength of ``l2_grid``
    and a number of views of ``views_grid`` to fit on (the first v of ``x``, (V, N, d), from
    :func:`augmented_features`; the held-out fold is scored on its images themselves, view 0).
    Folds are of images, all views of one image in the same fold. Returns ``{"l2", "views"}``
    and how it was chosen: ``{"by", "candidates": [{"views", "l2", "val_acc", "val_loss"}]}``,
    accuracy and loss pooled over the held-out folds."""
    grid = [(v, l2) for v in views_grid for l2 in l2_grid]
    if len(grid) == 1:
        return {"views": grid[0][0], "l2": grid[0][1]}, {"by": "one candidate", "candidates": []}
    ids = fold_ids(y, folds, seed)
    k = int(ids.max()) + 1
    scores = []
    for v, l2 in grid:
        correct, loss = 0, 0.0
        for f in range(k):
            fit_on, held = ids != f, ids == f
            xs = x[:v, fit_on].reshape(-1, x.shape[-1])
            fit = fit_linear_head(xs, y[fit_on].repeat(v), num_classes, l2)
            logits = x[0, held] @ fit.weight.T + fit.bias
            correct += (logits.argmax(1) == y[held]).sum().item()
            loss += F.cross_entropy(logits, y[held], reduction="sum").item()
        scores.append(
            {"views": v, "l2": l2, "val_acc": correct / len(y), "val_loss": loss / len(y)}
        )
    best = best_candidate(scores)
    recipe = {"views": best["views"], "l2": best["l2"]}
    return recipe, {"by": f"{k}-fold cross-validation", "candidates": scores}
