"""The article's network as its section 5 writes it, and its repair step
by step (chapter 5).

:class:`ArticleNet` is the article's code, verbatim in substance;
:class:`ArticleNetFixed` adds what it lacks, one switch at a time: a
classifier head, nonlinearities and batch normalisation, and the residual
blocks its text promises. Both build by name: ``build_model("article")``,
``build_model("article_fixed", skip=False)``.

Held to 77 columns: chapter 5 shows these classes as they are written here.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_lab.blocks import BasicBlock, check_num_classes, conv3x3
from resnet_lab.lab.names import register_model


class ArticleNet(nn.Module):
    """The article's network, exactly as its section 5 writes it (the
    class is called ``ResNet`` there): eight 3x3 convolutions with padding
    1, stride 1 and biases, 3 -> 16 -> 16 -> 32 -> 32 -> 64 -> 64 -> 128
    -> 128 channels, applied one after another. 293,520 parameters.

    What is missing: an activation between the convolutions (so the eight
    compose to one affine map of the input: one 17x17 convolution away
    from the borders, position-dependent near them, where each layer's
    zero padding cuts paths off), batch normalisation, any skip connection
    (nothing adds an input back), and a classifier head: ``forward``
    returns the last feature map, (B, 3, 32, 32) -> (B, 128, 32, 32).
    :class:`ArticleNetFixed` repairs it step by step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.conv6 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.conv7 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.conv8 = nn.Conv2d(128, 128, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        x3 = self.conv3(x2)
        x4 = self.conv4(x3)
        x5 = self.conv5(x4)
        x6 = self.conv6(x5)
        x7 = self.conv7(x6)
        x8 = self.conv8(x7)
        return x8  # (B, 128, 32, 32): feature maps, not class scores


class ArticleNetFixed(nn.Module):
    """The article's eight convolutions, repaired one step at a time
    (chapter 5). Every variant has what the article lacks most, a head:
    global average pooling and a linear classifier,
    (B, 3, 32, 32) -> (B, num_classes).

    - ``nonlinear=False``: the article's eight biased convolutions, still
      with nothing between them, plus the head: the loss runs, but the
      network is a linear classifier.
    - ``nonlinear=True, skip=False``: BN and ReLU after every convolution
      (no biases: BN shifts); a plain 8-layer network.
    - ``nonlinear=True, skip=True`` (the default): what the article's text
      promises, "a network with three residual blocks": a two-convolution
      stem, then convolutions 3-8 as three
      :class:`~resnet_lab.blocks.BasicBlock` with the 1x1 projection
      shortcut that the article's section 3 describes (the width changes
      in each block).

    Every layer runs at full 32x32 resolution, as in the article; that
    makes it several times costlier than the paper's ResNet-20 for about
    the same number of parameters.
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        nonlinear: bool = True,
        skip: bool = True,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if skip and not nonlinear:
            raise ValueError(
                "skip=True needs nonlinear=True: its blocks need BN, ReLU",
            )
        if not nonlinear:
            self.features = ArticleNet()
        else:
            # conv1 and conv2, then conv3-8 as three blocks, each with a 1x1
            # projection on its shortcut (the width changes in each)
            self.features = nn.Sequential(
                conv3x3(3, 16),
                nn.BatchNorm2d(16),
                nn.ReLU(inplace=True),
                conv3x3(16, 16),
                nn.BatchNorm2d(16),
                nn.ReLU(inplace=True),
                BasicBlock(16, 32, skip=skip, shortcut="B"),  # conv3, conv4
                BasicBlock(32, 64, skip=skip, shortcut="B"),  # conv5, conv6
                BasicBlock(64, 128, skip=skip, shortcut="B"),  # conv7, conv8
            )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)
        linear = "" if nonlinear else " (linear)"
        plain = "" if skip else " (plain)"
        self.name = "article_fixed" + linear + plain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 128, 32, 32)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 128)
        return self.fc(x)  # (B, num_classes)


register_model("article", ArticleNet)
register_model("article_fixed", ArticleNetFixed)
