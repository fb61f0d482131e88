"""Residual networks and their plain twins.

- :func:`cifar_resnet`: the CIFAR-10 networks of He et al. (2015, §4.2), depth 6n+2, and
  their plain twins (``skip=False``). Parameter counts match the paper's Table 6 exactly.
- :func:`resnet18` ... :func:`resnet152`: ImageNet ResNets whose state-dict keys and shapes
  are torchvision's, so ``ours.load_state_dict(torchvision_model.state_dict())`` works.
- :func:`count_params`: the one parameter counter (the trainer's record, fine-tuning, the
  chapters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from resnet_lab.blocks import (
    BLOCKS,
    SHORTCUTS,
    BasicBlock,
    Bottleneck,
    check_num_classes,
    conv3x3,
    zero_init_residual_,
)

# the paper's deepest CIFAR network is 1202 layers (§4.2; it overfits); 2000 = 6*333+2 = 9*222+2
# leaves room beyond it, while a typo such as resnet99999998 fails at once instead of allocating
# for hours (resnet1202 has 19.4M parameters)
MAX_CIFAR_DEPTH = 2000


def make_stages(
    block: type[nn.Module],
    in_planes: int,
    layers: Sequence[int],
    widths: Sequence[int],
    **block_kw,
) -> list[nn.Sequential]:
    """Stage i: ``layers[i]`` blocks of width ``widths[i]``. Only the first
    block of a stage changes the shape: after the first stage it halves the
    resolution (stride 2) while it widens the channels, and its shortcut
    follows (option A pads, B projects). The others keep the shape.

    CIFAR ResNet-20: layers (3, 3, 3), widths (16, 32, 64), (B, 16, 32, 32)
    -> (B, 16, 32, 32) -> (B, 32, 16, 16) -> (B, 64, 8, 8).
    """
    stages = []
    for i, (n, width) in enumerate(zip(layers, widths)):
        stride = 1 if i == 0 else 2  # stage 1 keeps the stem's resolution
        first = block(in_planes, width, stride, **block_kw)
        in_planes = width * block.expansion  # what the next block takes in
        rest = [block(in_planes, width, 1, **block_kw) for _ in range(n - 1)]
        stages.append(nn.Sequential(first, *rest))
    return stages


class ResNet(nn.Module):
    """A stem, stages of residual blocks, global average pooling and a linear classifier.

    ``stem="cifar"``: one 3x3 conv at full resolution (He et al. 2015 §4.2).
    ``stem="imagenet"``: a 7x7 stride-2 conv and a 3x3 max-pool (§3.4, torchvision's layout).
    Stage i has ``layers[i]`` blocks of width ``widths[i]``; every stage after the first
    halves the resolution in its first block.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        num_classes: int = 10,
        stem: str = "cifar",
        skip: bool = True,
        shortcut: str = "A",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.skip = skip
        self.shortcut = shortcut
        self.preact = block is BLOCKS["preact"]
        stem_width = widths[0]
        if stem == "cifar":
            self.conv1 = conv3x3(3, stem_width)
            self.maxpool = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        # a pre-activation network normalises inside its first block, so the stem is a bare conv
        self.bn1 = nn.Identity() if self.preact else nn.BatchNorm2d(stem_width)
        self.relu = nn.Identity() if self.preact else nn.ReLU(inplace=True)

        stages = make_stages(block, stem_width, layers, widths, skip=skip, shortcut=shortcut)
        for i, stage in enumerate(stages, start=1):
            setattr(self, f"layer{i}", stage)  # torchvision's names: layer1, layer2, ...
        self.num_stages = len(layers)
        in_planes = widths[-1] * block.expansion
        # pre-activation blocks end in a conv: one last BN-ReLU before pooling (He et al. 2016)
        self.final_act = (
            nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU()) if self.preact else nn.Identity()
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for b in self.blocks():
                zero_init_residual_(b)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    def blocks(self) -> list[nn.Module]:
        """All residual blocks, input to output."""
        return [b for stage in self.stages() for b in stage]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # CIFAR: (B, 16, 32, 32)
        x = self.maxpool(x)
        # CIFAR: (B, 16, 32, 32) -> (B, 32, 16, 16) -> (B, 64, 8, 8)
        for stage in self.stages():
            x = stage(x)
        x = self.final_act(x)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 64)
        return self.fc(x)  # (B, num_classes)


def cifar_blocks_per_stage(depth: int, block: str = "basic") -> int:
    """n for a CIFAR ResNet of the given depth: 6n+2 (basic, preact) or 9n+2 (bottleneck)."""
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {tuple(BLOCKS)}, got {block!r}")
    per_block = 9 if block == "bottleneck" else 6
    in_range = isinstance(depth, int) and per_block + 2 <= depth <= MAX_CIFAR_DEPTH
    if not in_range or (depth - 2) % per_block:
        valid = ", ".join(str(per_block * n + 2) for n in (1, 2, 3, 4))
        raise ValueError(
            f"depth must be {per_block}n+2 for {block!r} blocks ({valid}, ... up to "
            f"{MAX_CIFAR_DEPTH}; the paper's deepest is 1202), got {depth!r}"
        )
    return (depth - 2) // per_block


def cifar_resnet(
    depth: int,
    *,
    skip: bool = True,
    shortcut: str = "A",
    block: str = "basic",
    width: int = 16,
    num_classes: int = 10,
    zero_init_residual: bool = False,
) -> ResNet:
    """The CIFAR-10 network of He et al. (2015, §4.2), or its plain twin with ``skip=False``.

    A 3x3 conv with ``width`` filters, three stages of n blocks at width, 2 width, 4 width
    filters on 32, 16 and 8 pixels (stride 2 in the first conv of stages 2 and 3), global
    average pooling and a linear classifier: 6n+2 weight layers.
    ``cifar_resnet(56, skip=False)`` is the paper's plain-56.

    (B, 3, 32, 32) -> (B, num_classes).
    """
    n = cifar_blocks_per_stage(depth, block)
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer (the paper uses 16), got {width!r}")
    if shortcut == "A" and width % 2:
        raise ValueError(
            f"shortcut 'A' pads channels evenly on both sides, so width must be even, got {width}"
        )
    model = ResNet(
        BLOCKS[block],
        [n, n, n],
        [width, 2 * width, 4 * width],
        num_classes=num_classes,
        stem="cifar",
        skip=skip,
        shortcut=shortcut,
        zero_init_residual=zero_init_residual,
    )
    variant = [f"{block} blocks"] if block != "basic" else []
    variant += [f"shortcut {shortcut}"] if shortcut != "A" and skip else []
    variant += [f"width {width}"] if width != 16 else []
    variant += ["zero-init"] if zero_init_residual else []
    suffix = f" ({', '.join(variant)})" if variant else ""
    model.name = f"{'resnet' if skip else 'plain'}{depth}{suffix}"
    model.build_spec = {
        "name": "cifar_resnet",
        "kwargs": dict(
            depth=depth,
            skip=skip,
            shortcut=shortcut,
            block=block,
            width=width,
            num_classes=num_classes,
            zero_init_residual=zero_init_residual,
        ),
    }
    return model


def resnet20(**kw) -> ResNet:
    """The paper's ResNet-20; every other depth: ``cifar_resnet(56, skip=False)``, or by name
    with :func:`resnet_lab.lab.names.build_model` (``"plain56"``)."""
    return cifar_resnet(20, **kw)


# ---------------------------------------------------------------------------- ImageNet

IMAGENET_LAYERS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def imagenet_resnet(
    depth: int, *, num_classes: int = 1000, skip: bool = True, zero_init_residual: bool = False
) -> ResNet:
    """ImageNet ResNet-``depth`` (He et al. 2015, Table 1), torchvision's layout and keys.

    Shortcut B: projections only where shapes change. (B, 3, 224, 224) -> (B, num_classes).
    """
    if depth not in IMAGENET_LAYERS:
        raise ValueError(f"ImageNet depth must be one of {tuple(IMAGENET_LAYERS)}, got {depth!r}")
    block, layers = IMAGENET_LAYERS[depth]
    model = ResNet(
        block,
        layers,
        (64, 128, 256, 512),
        num_classes=num_classes,
        stem="imagenet",
        skip=skip,
        shortcut="B",
        zero_init_residual=zero_init_residual,
    )
    model.name = f"{'resnet' if skip else 'plain'}{depth} (ImageNet)"
    model.build_spec = {
        "name": "imagenet_resnet",
        "kwargs": dict(
            depth=depth, num_classes=num_classes, skip=skip, zero_init_residual=zero_init_residual
        ),
    }
    return model


def resnet18(num_classes: int = 1000, **kw) -> ResNet:
    return imagenet_resnet(18, num_classes=num_classes, **kw)


def resnet50(num_classes: int = 1000, **kw) -> ResNet:
    return imagenet_resnet(50, num_classes=num_classes, **kw)


# ---------------------------------------------------------------------------- weights, parameters


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BN's running statistics are buffers and are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
