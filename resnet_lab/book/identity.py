"""Identity mappings (He et al. 2016, "Identity Mappings in Deep Residual Networks", Eqs. 4-8):
the Jacobians of a stack of pre-activation blocks, and the gradient through shortcuts scaled
by λ, x_{l+1} = λ x_l + F(x_l).

>>> J, parts = stack_jacobians(blocks, x0)      # doctest: +SKIP
>>> gradient_ratio(1.1, depth=50)               # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.functional import jacobian

from resnet_lab.blocks import PreActBlock


def branch_of(block: PreActBlock) -> PreActBlock:
    """The residual branch F of an identity-shortcut ``block``, as a module of its own: its
    plain twin (``skip=False``) with the block's weights, dtype and mode."""
    if not isinstance(block, PreActBlock) or block.downsample is not None or not block.skip:
        raise ValueError(
            "branch_of needs a PreActBlock with an identity shortcut "
            "(stride 1, in_planes == planes, skip=True)"
        )
    planes = block.conv1.out_channels
    twin = PreActBlock(planes, planes, skip=False).to(block.conv1.weight)
    twin.load_state_dict(block.state_dict())
    return twin.train(block.training)


def stack_jacobians(
    blocks: list[PreActBlock], x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The Jacobian of the stack ``blocks[-1](... blocks[0](x))`` at ``x``
    (one input, (1, C, H, W)), an (n, n) matrix with n = x.numel(), and
    the Jacobian of each block's residual branch at the input that block
    sees: [J_F0, J_F1, ...], each (n, n)."""
    n = x.numel()

    def stack(t):
        for b in blocks:
            t = b(t)
        return t

    parts, t = [], x
    for b in blocks:
        parts.append(jacobian(branch_of(b), t).reshape(n, n))
        with torch.no_grad():
            t = b(t)
    return jacobian(stack, x).reshape(n, n), parts


class ScaledShortcut(nn.Module):
    """x -> lam * x + F(x), F a pre-activation branch (BN-ReLU-conv
    twice, random weights). (B, channels, H, W) -> (B, channels, H, W).
    """

    def __init__(self, channels: int, lam: float) -> None:
        super().__init__()
        self.lam = lam
        self.branch = PreActBlock(channels, channels, skip=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + self.branch(x)


def gradient_ratio(
    lam: float,
    depth: int,
    *,
    seed: int = 0,
    channels: int = 16,
    size: int = 8,
    batch: int = 16,
    train_bn: bool = False,
) -> float:
    """‖∂𝓛/∂x_0‖ / ‖∂𝓛/∂x_L‖ through ``depth`` fresh :class:`ScaledShortcut` blocks, in
    float64, for a random input (``batch``, ``channels``, ``size``, ``size``) and a random
    gradient arriving at the output x_L (so 𝓛 = <g, x_L>). BN uses fixed statistics (eval
    mode, as at the start: mean 0, variance 1) unless ``train_bn``. Seeded by ``seed``; the
    caller's random state is left as it was."""
    if depth < 1:
        raise ValueError(f"depth must be a positive number of blocks, got {depth}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stack = nn.Sequential(*[ScaledShortcut(channels, lam) for _ in range(depth)])
        stack = stack.double().train(train_bn)
        x0 = torch.randn(batch, channels, size, size, dtype=torch.float64, requires_grad=True)
        xL = stack(x0)
        g = torch.randn_like(xL)
    (grad,) = torch.autograd.grad(xL, x0, grad_outputs=g)
    return (grad.norm() / g.norm()).item()


def ratio_curves(
    lams: tuple[float, ...], depths: tuple[int, ...], seed: int = 0
) -> dict[float, list[float]]:
    """:func:`gradient_ratio` for each λ of ``lams`` at each depth of ``depths``:
    {λ: [ratio at depths[0], ...]}."""
    return {lam: [gradient_ratio(lam, d, seed=seed) for d in depths] for lam in lams}
