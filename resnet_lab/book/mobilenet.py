"""MobileNetV2's inverted residual (chapter 9): where the bottleneck of
:mod:`resnet_lab.blocks` went next. No network of the package uses it; chapter 9 shows it beside
the bottleneck and counts both.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_lab.blocks import conv1x1
from resnet_lab.config import is_int


class InvertedResidual(nn.Module):
    """MobileNetV2's block (Sandler et al. 2018): the bottleneck turned inside out.

    1x1 (expand by ``expand``) -> 3x3 *depthwise* -> 1x1 (project), each with BN. The narrow
    ends carry the stream and the shortcut; the wide middle is where the block computes, and
    its 3x3 filters each see one channel (``groups=hidden``), so a wide middle stays cheap. No
    ReLU after the projection (a "linear bottleneck"), and ReLU6 elsewhere, as in the paper.
    The shortcut exists only where the shape is kept (stride 1, in_planes == out_planes), and
    ``skip=False`` removes it there too; ``expand=1`` drops the first 1x1, as torchvision's
    ``mobilenet_v2`` does.

    (B, in_planes, H, W) -> (B, out_planes, H/stride, W/stride).
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        stride: int = 1,
        *,
        expand: int = 6,
        skip: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_planes", in_planes), ("out_planes", out_planes)):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not is_int(expand) or expand < 1:
            raise ValueError(
                f"expand must be a positive integer (6 in MobileNetV2), got {expand!r}"
            )
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        hidden = in_planes * expand
        self.skip = skip and stride == 1 and in_planes == out_planes
        self.expand = nn.Identity()
        if expand > 1:
            self.expand = nn.Sequential(
                conv1x1(in_planes, hidden), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)
            )
        self.depthwise = nn.Conv2d(
            hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False
        )
        self.bn2 = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU6(inplace=True)
        self.project = conv1x1(hidden, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x)  # (B, hidden, H, W)
        out = self.depthwise(out)  # (B, hidden, H/s, W/s)
        out = self.relu(self.bn2(out))
        # no ReLU after the projection: a "linear bottleneck"
        out = self.bn3(self.project(out))  # (B, out_planes, H/s, W/s)
        if self.skip:
            out = out + x
        return out
