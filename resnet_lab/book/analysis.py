"""Pure computations the chapters and explorers print and plot: multiply-adds, shapes and
strides, the order a block runs its layers in, a block's residual branch, the stages of a
network, the paths through a residual stack, gradient norms per layer, signal propagation
through the blocks, lesions of trained networks. No plotting, no training here."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from resnet_lab.blocks import BasicBlock
from resnet_lab.evaluation import eval_mode, evaluate
from resnet_lab.models import cifar_resnet, count_params, imagenet_resnet


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass on ``x`` in its convolutions and linear layers (the
    arithmetic that dominates; BN, ReLU and additions are not counted), summed over the batch.

    A conv producing (C_out, H, W) costs C_out * H * W * (C_in / groups) * k_h * k_w.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    handles = [m.register_forward_hook(conv_hook) for m in convs]
    handles += [m.register_forward_hook(linear_hook) for m in linears]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def shape_trace(
    model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32), depth: int = 2
) -> OrderedDict[str, tuple[int, ...]]:
    """Output shape of every submodule up to ``depth`` levels deep, in the order they run.

    ``shape_trace(resnet20())`` gives ``{"conv1": (1, 16, 32, 32), ..., "fc": (1, 10)}``.
    Runs one forward pass in eval mode on zeros, on the model's own device.
    """
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name or name.count(".") >= depth or isinstance(module, nn.Identity):
            continue

        def pre(_m, _inp, name=name):
            if name not in order:
                order.append(name)

        def post(_m, _inp, out, name=name):
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    try:
        with eval_mode(model):
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return OrderedDict((name, shapes[name]) for name in order if name in shapes)


class Step(NamedTuple):
    """One operation of a module's forward pass, as :func:`forward_steps` records it."""

    name: str  # the child's attribute name ("conv1"), or the function's ("add", "relu")
    module: nn.Module | None  # the child module, or None for a function or the input
    inputs: tuple[int, ...]  # the steps whose outputs it reads (0 is the module's input)


ADDS = {"add", "__add__", "__radd__", "add_", "__iadd__"}


def forward_steps(module: nn.Module, x: torch.Tensor) -> list[Step]:
    """The operations of one ``module(x)`` at its own level, in the order they ran: each call of
    a direct child, and each tensor function called in ``forward`` itself (an addition ``out +
    identity`` becomes a step named ``"add"``), with the steps each one read. Step 0 is ``x``.

    ``forward_steps(BasicBlock(16, 16), x)``: x, conv1, bn1, relu, conv2, bn2, add (reading bn2
    and x), relu. Runs the module once in eval mode, with gradients on (so torch's fused fast
    paths stay off and every child is called).
    """
    steps = [Step("input", None, ())]
    made = {id(x): 0}  # id of a tensor -> the step that produced it
    alive = [x]  # every tensor recorded stays alive, so no id is reused
    depth = 0  # > 0 while inside a child

    def record(name, child, args, out) -> None:
        flat = [a for a in _tensors(args) if id(a) in made]
        outs = _tensors(out)
        if outs and flat:
            steps.append(Step(name, child, tuple(dict.fromkeys(made[id(a)] for a in flat))))
            made.update((id(t), len(steps) - 1) for t in outs)
            alive.extend(outs)

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if depth == 0:
                name = getattr(func, "__name__", str(func))
                record("add" if name in ADDS else name, None, (args, kwargs), out)
            return out

    def pre(_child, _args, _kwargs):
        nonlocal depth
        depth += 1

    def post(child, args, kwargs, out):
        nonlocal depth
        depth -= 1
        if depth == 0:
            record(names[id(child)], child, (args, kwargs), out)

    names = {id(m): n for n, m in module.named_children()}
    handles = []
    for _, child in module.named_children():
        handles.append(child.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(child.register_forward_hook(post, with_kwargs=True))
    try:
        with eval_mode(module), torch.enable_grad(), Recorder():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return steps


def _tensors(obj) -> list[torch.Tensor]:
    """The tensors in a nest of tuples, lists and dicts, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    return []


def stage_table(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """The stages of a :class:`~resnet_lab.models.ResNet` as the paper's Table 1 lists them: per
    stage its output shape (traced on ``input_shape``), its number of blocks, and the
    convolutions of one block as ``(kernel, out_channels)`` pairs, in the order they run."""
    shapes = shape_trace(model, input_shape, depth=1)
    return [
        {
            "stage": f"layer{i}",
            "output": shapes[f"layer{i}"][1:],
            "blocks": len(stage),
            "convs": [
                (m.kernel_size[0], m.out_channels)
                for _, m in weight_layers(stage[-1])
                if isinstance(m, nn.Conv2d)
            ],
        }
        for i, stage in enumerate(model.stages(), start=1)
    ]


def stride_on_first_1x1_(model: nn.Module) -> nn.Module:
    """Move the stride of every strided bottleneck from its 3x3 to its first 1x1, in place.

    That is the paper's ResNet-50 (He et al. 2015, "v1"); torchvision and resnet_lab stride
    the 3x3 ("v1.5"), which costs more multiply-adds. Parameters are unchanged."""
    for block in model.blocks():
        if hasattr(block, "conv3") and block.conv2.stride != (1, 1):
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    return model


def imagenet_costs(depth: int) -> dict:
    """What the paper's Table 1 lists for the ImageNet ResNet-``depth``, computed from
    :func:`~resnet_lab.models.imagenet_resnet` on one 224x224 image: the stem (``(kernel,
    channels, stride)`` of its conv, ``(kernel, stride)`` of its max-pool, their output shapes),
    the stages (:func:`stage_table`), the classes, the parameters and the multiply-adds, of our
    network and of the paper's layout (:func:`stride_on_first_1x1_`)."""
    model = imagenet_resnet(depth)
    x = torch.zeros(1, 3, 224, 224)
    shapes = shape_trace(model, x.shape, depth=1)
    conv, pool = model.conv1, model.maxpool
    return {
        "conv1": (conv.kernel_size[0], conv.out_channels, conv.stride[0]),
        "conv1_output": shapes["conv1"][1:],
        "maxpool": (pool.kernel_size, pool.stride),
        "maxpool_output": shapes["maxpool"][1:],
        "stages": stage_table(model, x.shape),
        "classes": model.fc.out_features,
        "params": count_params(model),
        "macs": count_macs(model, x),
        "paper_layout_macs": count_macs(stride_on_first_1x1_(imagenet_resnet(depth)), x),
    }


def unrolled_paths(n: int) -> list[tuple[int, ...]]:
    """The 2^n paths through a stack of ``n`` residual blocks (Veit et al. 2016): each path is
    the tuple of blocks whose residual branch it passes through (the rest it skips), shortest
    first. ``unrolled_paths(2)``: (), (0,), (1,), (0, 1)."""
    return [p for k in range(n + 1) for p in itertools.combinations(range(n), k)]


def path_lengths(n: int) -> list[int]:
    """How many of the 2^n paths through ``n`` residual blocks pass through k residual branches,
    for k = 0..n: the binomial coefficients C(n, k) (Veit et al. 2016, Fig. 6a)."""
    return [math.comb(n, k) for k in range(n + 1)]


def feature_strides(features: Mapping[str, torch.Tensor], image: torch.Tensor) -> dict[str, int]:
    """The stride of each feature map: how many input pixels one step on the map covers.

    ``features`` maps names to (B, C, h, w) maps computed from ``image`` (B, 3, H, W), as a
    backbone returns them; a map's stride is H / h, and it must be W / w too. An FPN reads a
    ResNet's four stages at strides 4, 8, 16 and 32 (Lin et al. 2017).
    """
    height, width = image.shape[-2:]
    strides = {}
    for name, f in features.items():
        if f.dim() < 3:
            raise ValueError(f"feature {name!r} has shape {tuple(f.shape)}: not a feature map")
        h, w = f.shape[-2:]
        if height % h or width % w or height // h != width // w:
            raise ValueError(
                f"feature map {name!r} is {h}x{w} for a {height}x{width} image, not one stride "
                "on both axes: give the image sides that are multiples of the largest stride "
                "(32 for a ResNet)"
            )
        strides[name] = height // h
    return strides


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolutions and linear layers in the order they are defined (input to output),
    shortcut projections excluded: these are the layers a depth count counts."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and ".downsample" not in name
    ]


def residual_branch(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    """F(x) of a basic block: its layers before the sum.

    (B, C, H, W) -> (B, planes, H/stride, W/stride). The block's
    forward adds the shortcut to this, then applies the last ReLU.
    """
    if not isinstance(block, BasicBlock):
        kind = type(block).__name__
        raise TypeError(f"residual_branch takes a BasicBlock, got {kind}")
    out = block.relu(block.bn1(block.conv1(x)))
    return block.bn2(block.conv2(out))


def gradient_norms(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """L2 norm of the loss gradient of each weight layer's weight, input to output, for one batch.

    Uses the model's current mode (train mode: BN uses batch statistics, as in training).
    Leaves the model's ``.grad`` fields cleared.
    """
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    layers = weight_layers(model)
    grads = torch.autograd.grad(loss, [m.weight for _, m in layers])
    return [g.norm().item() for g in grads]


@contextlib.contextmanager
def recording_block_stats(model: nn.Module):
    """While active, every forward pass appends each residual block's output mean and std to
    the yielded ``{"block": [...], "mean": [...], "std": [...]}`` (input to output)."""
    stats: dict[str, list] = {"block": [], "mean": [], "std": []}
    names = {id(m): n for n, m in model.named_modules()}

    def hook(module, _inp, out):
        out = out.detach().float()
        stats["block"].append(names[id(module)])
        stats["mean"].append(out.mean().item())
        stats["std"].append(out.std().item())

    handles = [b.register_forward_hook(hook) for b in model.blocks()]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def activation_stats(model: nn.Module, images: torch.Tensor) -> dict[str, list[float]]:
    """Mean and standard deviation of the output of every residual block (signal propagation).

    Returns ``{"block": [...names], "mean": [...], "std": [...]}``, input to output. Works for
    any model with a ``blocks()`` method (the CIFAR and ImageNet ResNets).
    """
    with recording_block_stats(model) as stats:
        model(images)
    return stats


class _Skip(nn.Module):
    """Stands in for a removed block: passes the input through its shortcut branch only."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.downsample = getattr(block, "downsample", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)


def lesion(model: nn.Module, loader, block_index: int) -> float:
    """Test accuracy with residual block ``block_index`` removed at test time (Veit et al. 2016).

    A removed residual block keeps only its shortcut: x -> x (or the shortcut's projection /
    padding where the shape changes). A plain block has no shortcut, so removing it passes the
    input straight on where shapes allow, and raises a ValueError where they don't (the first
    block of a stage changes the number of channels). The model is restored afterwards.
    """
    blocks = model.blocks()
    if not 0 <= block_index < len(blocks):
        raise ValueError(f"block_index must be in 0..{len(blocks) - 1}, got {block_index}")
    target = blocks[block_index]
    if not getattr(target, "skip", True) and _changes_shape(target):
        raise ValueError(
            f"block {block_index} of a plain network changes the tensor's shape and has no "
            "shortcut: "
            "it cannot be removed; pick a block that is not the first of its stage"
        )
    stage, position = _position_of(model, target)
    stage[position] = _Skip(target) if getattr(target, "skip", True) else nn.Identity()
    try:
        _, acc = evaluate(model, loader)
    finally:
        stage[position] = target
    return acc


def _changes_shape(block: nn.Module) -> bool:
    conv1 = block.conv1
    return conv1.stride != (1, 1) or conv1.in_channels != _out_channels(block)


def _out_channels(block: nn.Module) -> int:
    last = getattr(block, "conv3", None) or block.conv2
    return last.out_channels


def _position_of(model: nn.Module, target: nn.Module) -> tuple[nn.Sequential, int]:
    for stage in model.stages():
        for i, b in enumerate(stage):
            if b is target:
                return stage, i
    raise ValueError("block not found in the model's stages")


def depth_profile(
    depth: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    skip: bool = True,
    shortcut: str = "A",
    zero_init: bool = False,
    seed: int = 0,
) -> dict:
    """Everything the depth explorer shows for one freshly initialised CIFAR network:
    ``{"name", "params", "grad_norms", "act_std", "act_mean"}`` (per layer / per block).

    One forward and one backward pass: the block statistics are read during the forward pass
    that the gradients need (the same numbers :func:`activation_stats` gives in train mode).
    """
    torch.manual_seed(seed)
    model = cifar_resnet(depth, skip=skip, shortcut=shortcut, zero_init_residual=zero_init)
    with recording_block_stats(model) as stats:
        grads = gradient_norms(model, images, labels)
    return {
        "name": model.name,
        "params": count_params(model),
        "grad_norms": grads,
        "act_std": stats["std"],
        "act_mean": stats["mean"],
    }


def lesion_curve(model: nn.Module, loader) -> list[float | None]:
    """:func:`lesion` for every block in turn: accuracy with block i removed, or ``None`` where
    a plain block cannot be removed (it changes the shape and has no shortcut)."""
    out: list[float | None] = []
    for i in range(len(model.blocks())):
        try:
            out.append(lesion(model, loader, i))
        except ValueError:
            out.append(None)
    return out
