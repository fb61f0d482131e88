"""Residual blocks: the basic block, the bottleneck and the pre-activation block.

Every block takes ``skip``: ``skip=True`` is the residual block of He et al. (2015),
``skip=False`` its *plain twin*, the same layers with the shortcut removed. Depth and skip
connections are arguments, not separate classes, so a widget that toggles ``skip`` toggles
exactly the code the book explains.

Where a block changes the shape of its input (stride 2, or more channels) the shortcut
cannot be a bare identity. The paper gives options A and B in §3.3 and adds C in §4.1:

- ``"A"``: identity with 2x subsampling and zero-padded extra channels (no parameters);
  the paper's choice for CIFAR-10.
- ``"B"``: a 1x1 convolution + BN projection where shapes change, identity elsewhere;
  torchvision's ImageNet ResNets use it.
- ``"C"``: a projection in every block.

Attribute names follow torchvision (``conv1``, ``bn1``, ..., ``downsample``) so that
torchvision's state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.config import is_int

SHORTCUTS = ("A", "B", "C")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BN follows, which has its own)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def check_num_classes(num_classes) -> None:
    """Refuse a classifier head of no classes (or a float, or a bool), for every network here."""
    if not is_int(num_classes) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive integer (10 for CIFAR-10), got {num_classes!r}"
        )


class PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the new channels, split evenly.

    (B, C_in, H, W) -> (B, C_out, H/stride, W/stride). The paper does not say where the zeros
    go; the split is our choice. With C_out = 2 C_in it is exactly the padding of the widely
    used reproduction akamaster/pytorch_resnet_cifar10 (C_in/2 zero channels before and after),
    so its published weights give the same outputs. fb.resnet.torch appends all the zeros after.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(
                f"shortcut 'A' can only add channels ({in_planes} -> {out_planes}); "
                "use shortcut='B' for a projection"
            )
        self.stride = stride
        self.pad_before = (out_planes - in_planes) // 2
        self.pad_after = out_planes - in_planes - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


def make_shortcut(
    in_planes: int, out_planes: int, stride: int, shortcut: str | None
) -> nn.Module | None:
    """The shortcut branch of a block, or ``None`` for a plain identity.

    ``None`` where the shapes match (options A and B); where they change, a
    :class:`PadShortcut` for option A and a 1x1 conv + BN projection for B;
    a projection always for C. ``shortcut=None`` is a plain block's: no
    shortcut at all.
    """
    if shortcut is None:
        return None
    if shortcut not in SHORTCUTS:
        options = f"{SHORTCUTS} (He et al. 2015, §3.3, §4.1)"
        msg = f"shortcut must be one of {options}, got {shortcut!r}"
        raise ValueError(msg)
    same_shape = stride == 1 and in_planes == out_planes
    if shortcut == "C" or (shortcut == "B" and not same_shape):
        conv = conv1x1(in_planes, out_planes, stride)
        return nn.Sequential(conv, nn.BatchNorm2d(out_planes))
    if same_shape:
        return None
    return PadShortcut(in_planes, out_planes, stride)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; the shortcut is added *before* the last ReLU.

    out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))      (He et al. 2015, Fig. 2)

    (B, in_planes, H, W) -> (B, planes, H/stride, W/stride).
    """

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        *,
        skip: bool = True,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        self.skip = skip
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        if not skip:
            shortcut = None  # a plain block: no shortcut branch at all
        self.downsample = make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            if self.downsample is not None:  # where the shape changes
                identity = self.downsample(identity)
            out = out + identity
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN whose weight, set to zero, makes the residual branch F(x) output zero."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand by 4), each with BN, shortcut added before the last ReLU.

    The 1x1s shrink and restore the channels so the costly 3x3 runs on a quarter of them (He et
    al. 2015, Fig. 5): the nearest real block to the article's section 3. The stride sits on the
    3x3, as in torchvision ("ResNet v1.5").

    (B, in_planes, H, W) -> (B, 4 * planes, H/stride, W/stride).
    """

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        *,
        skip: bool = True,
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        self.skip = skip
        out_planes = planes * self.expansion
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        if not skip:
            shortcut = None  # a plain block: no shortcut branch at all
        self.downsample = make_shortcut(in_planes, out_planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))  # (B, planes, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, planes, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4 planes, H/s, W/s)
        if self.skip:
            if self.downsample is not None:  # where the shape changes
                identity = self.downsample(identity)
            out = out + identity
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016): BN-ReLU-conv twice, nothing after the sum.

    out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)

    The sum is left untouched, so a stack of these blocks carries x unchanged from block to
    block: x_L = x_l + sum of the residuals in between. When shapes change, the projection
    (or the padding) is applied to the pre-activated input, as in the paper's code.

    (B, in_planes, H, W) -> (B, planes, H/stride, W/stride).
    """

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        *,
        skip: bool = True,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        self.skip = skip
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU()
        if not skip:
            shortcut = None  # a plain block: no shortcut branch at all
        self.downsample = make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        # an identity shortcut carries the raw x; a shape-changing one
        # sees the activated input
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        if self.skip:
            out = out + identity
        return out

    def last_bn(self) -> None:
        return None  # the residual branch ends in a conv; zero-init sets conv2's weight instead


BLOCKS: dict[str, type[nn.Module]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact": PreActBlock,
}


def zero_init_residual_(block: nn.Module) -> None:
    """Make the residual branch output zero (Goyal et al. 2017): zero the last BN's scale, or,
    in a pre-activation block, which has no BN after its last convolution, that convolution's
    weights. A pre-activation block then starts as the identity; a basic or bottleneck block
    with an identity shortcut as ReLU(x), the identity for the non-negative input it gets from
    the ReLU before it."""
    bn = block.last_bn()
    if bn is not None:
        nn.init.zeros_(bn.weight)
    else:
        nn.init.zeros_(block.conv2.weight)
