"""Chapter 7's exercises: the post-norm transformer block, which blocks are the identity with
their branches zeroed, and a prediction about the scale of a transformer's stream."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from resnet_lab.blocks import BasicBlock, Bottleneck, PreActBlock, zero_init_residual_
from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    Variant,
    build,
    check_block,
    choice,
    choices,
    judge_prediction,
    passed,
    randomize_,
)


def _post_norm(m, x, *, first_sum=True, second_sum="h", mlp_input="h"):
    h = m.norm1(x + m.attention(x) if first_sum else m.attention(x))
    mlp = m.mlp(h if mlp_input == "h" else x)
    return m.norm2({"h": h + mlp, "x": x + mlp, None: mlp}[second_sum])


def _pre_norm(m, x):
    x = x + m.attention(m.norm1(x))
    return x + m.mlp(m.norm2(x))


POST_NORM_VARIANTS: list[Variant] = [
    (_pre_norm, "pre-norm", "this is the pre-norm block: post-norm normalises after each sum"),
    (
        functools.partial(_post_norm, mlp_input="x"),
        "mlp reads x",
        "the MLP reads the block's input x; it reads h, the stream after the first sum",
    ),
    (
        functools.partial(_post_norm, second_sum="x"),
        "second sum x",
        "the second sum adds the block's input x; it adds h, the stream after the first sum",
    ),
    (
        functools.partial(_post_norm, first_sum=False),
        "no first sum",
        "the first sum is missing: norm1(x + attention(x))",
    ),
    (
        functools.partial(_post_norm, second_sum=None),
        "no second sum",
        "the second sum is missing: norm2(h + mlp(h))",
    ),
]


def check_post_norm_block(cls) -> None:
    """Chapter 7, exercise 1: the 2017 transformer's post-norm block."""
    block = build(cls, 32, what="PostNormBlock")
    randomize_(block, torch.Generator().manual_seed(0))
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(1))
    check_block(
        block,
        x,
        order=["attn", "norm1", "mlp", "norm2"],
        reference=_post_norm,
        variants=POST_NORM_VARIANTS,
        what="your block",
        explain_order=lambda calls: (
            (POST_NORM_VARIANTS[0][2], "pre-norm") if calls[:2] == ["norm1", "attn"] else None
        ),
    )
    zeroed = copy.deepcopy(block).eval()
    for layer in (
        zeroed.attn.out_proj,
        [m for m in zeroed.mlp.modules() if isinstance(m, nn.Linear)][-1],
    ):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    with torch.no_grad():
        moved = (zeroed(x) - x).abs().max().item()
    passed(
        f"with zeroed branches your post-norm block still moves its input by up to "
        f"{moved:.3g}: the LayerNorm sits on the stream"
    )


IDENTITY_OPTIONS = ("basic", "bottleneck", "preact", "post-norm", "pre-norm")


def _zeroed_transformer(norm_first: bool) -> nn.Module:
    layer = nn.TransformerEncoderLayer(
        16, 2, 32, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    for lin in (layer.self_attn.out_proj, layer.linear2):
        nn.init.zeros_(lin.weight)
        nn.init.zeros_(lin.bias)
    return layer


def _zeroed(kind: str) -> tuple[nn.Module, torch.Tensor]:
    if kind in ("basic", "bottleneck", "preact"):
        block = {
            "basic": lambda: BasicBlock(8, 8),
            "bottleneck": lambda: Bottleneck(32, 8),  # 32 -> 8 -> 8 -> 32, identity shortcut
            "preact": lambda: PreActBlock(8, 8),
        }[kind]()
        zero_init_residual_(block)
        return block, torch.randn(2, block.conv1.in_channels, 6, 6)
    return _zeroed_transformer(kind == "pre-norm"), torch.randn(2, 5, 16)


def check_identity_blocks(answer) -> None:
    """Chapter 7, exercise 2: which blocks are exactly the identity when their branches
    output zero."""
    picked = choices(answer, IDENTITY_OPTIONS, "answer")
    truth = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for kind in IDENTITY_OPTIONS:
            block, x = _zeroed(kind)
            with torch.no_grad():
                if torch.equal(block(x), x):
                    truth.add(kind)
    reasons = {
        "basic": "the basic block's ReLU after the sum remains: relu(x), not x",
        "bottleneck": "the bottleneck's ReLU after the sum remains: relu(x), not x",
        "preact": "a pre-activation block leaves the sum alone: a zero branch gives x exactly",
        "post-norm": "the post-norm block's LayerNorm after each sum rescales every token",
        "pre-norm": "in a pre-norm block only the additions touch the stream",
    }
    wrong = [k for k in IDENTITY_OPTIONS if (k in picked) != (k in truth)]
    if wrong:
        raise NotYet(reasons[wrong[0]], wrong[0])
    passed("the blocks whose stream carries nothing but additions: " + ", ".join(sorted(truth)))


SCALE_CHOICES = ("pre-norm", "post-norm", "both", "neither")


def measure_scale() -> Measurement:
    """The output std of fresh pre-norm and post-norm transformer blocks (PyTorch's
    ``nn.TransformerEncoderLayer``) for tokens of std 1 and of std 10: whose output grows
    with the input more than 5-fold."""
    keeps = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(4, 12, 32)
        for kind, norm_first in (("pre-norm", True), ("post-norm", False)):
            layer = nn.TransformerEncoderLayer(
                32, 4, 128, dropout=0.0, batch_first=True, norm_first=norm_first
            )
            with torch.no_grad():
                s1, s10 = layer(x).std().item(), layer(10 * x).std().item()
            print(f"{kind:9s}: output std {s1:.2f} for input std 1, {s10:.2f} for input std 10")
            if s10 > 5 * s1:
                keeps.append(kind)
    truth = keeps[0] if len(keeps) == 1 else {0: "neither", 2: "both"}[len(keeps)]
    return Measurement(
        truth,
        "A LayerNorm on the stream resets its scale; additions alone carry it on.",
        "the pre-norm stream carries the input's scale on; post-norm resets it every block",
    )


def run_scale_prediction(prediction) -> None:
    """Chapter 7, predict then run: multiply a transformer block's input by 10; whose output
    grows with it?"""
    guess = choice(prediction, SCALE_CHOICES)
    judge_prediction(guess, measure_scale())
