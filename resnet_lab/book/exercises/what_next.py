"""Chapter 9's exercises: the post-norm transformer block from its description, the inputs on
which a zero-initialised basic block is the identity, and a prediction about the scale of a
transformer's stream."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from resnet_lab.blocks import BasicBlock, zero_init_residual_
from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    Variant,
    attempt,
    build,
    check_block,
    choice,
    judge_prediction,
    passed,
    randomize_,
)
from resnet_lab.models import cifar_resnet


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
    """Chapter 9, exercise 1: the 2017 transformer's post-norm block."""
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


def _zero_basic(channels: int = 8) -> BasicBlock:
    """A basic block whose residual branch outputs zero (its last BN's scale zeroed)."""
    block = BasicBlock(channels, channels)
    zero_init_residual_(block)
    return block


def _kept_input() -> torch.Tensor:
    """Values of both signs, and some exact zeros, on which to judge a mask."""
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    x[:, :, 0, 0] = 0.0
    return x


KEPT_MISTAKES = [
    (lambda x: x > 0, "zero", "a value of exactly 0 is kept too: the ReLU returns 0 for it"),
    (
        lambda x: x <= 0,
        "negatives",
        "the other way round: the ReLU after the sum passes the non-negative values as they are",
    ),
    (lambda x: x < 0, "negatives", "the other way round: the ReLU passes the non-negative values"),
    (
        lambda x: torch.ones_like(x, dtype=torch.bool),
        "all",
        "not every value: with its branch at zero the block still applies its last ReLU",
    ),
    (
        lambda x: torch.zeros_like(x, dtype=torch.bool),
        "none",
        "some values do come through unchanged: which ones does a ReLU leave alone?",
    ),
]


def _inputs_kept_in_a_network() -> tuple[float, int, int]:
    """Zero-initialise a ResNet-20 and feed it random images: the fraction of the values
    entering its basic blocks that are non-negative, and how many of its blocks keep the shape
    of their input (those a zero branch makes the identity on such values)."""
    seen: list[torch.Tensor] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = cifar_resnet(20, zero_init_residual=True).eval()
        blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
        hooks = [b.register_forward_pre_hook(lambda _m, a: seen.append(a[0])) for b in blocks]
        try:
            with torch.no_grad():
                net(torch.randn(4, 3, 32, 32))
        finally:
            for h in hooks:
                h.remove()
    kept = sum(int((t >= 0).sum()) for t in seen) / sum(t.numel() for t in seen)
    same = sum(b.downsample is None for b in blocks)
    return kept, same, len(blocks)


def check_kept(kept) -> None:
    """Chapter 9, exercise 2: ``kept(x)``, where a zero-initialised basic block returns x
    unchanged."""
    x = _kept_input()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        truth = _zero_basic().eval()(x.clone()) == x
    got = attempt(kept, x.clone(), what="kept(x)")
    if not isinstance(got, torch.Tensor) or got.dtype != torch.bool or got.shape != x.shape:
        raise NotYet(
            f"kept(x) returns a boolean tensor of x's shape {tuple(x.shape)}, True where the "
            f"value passes unchanged; got {type(got).__name__}"
            + (f" of {got.dtype}, {tuple(got.shape)}" if isinstance(got, torch.Tensor) else ""),
            "not a mask",
        )
    if torch.equal(got, truth):
        share, same, n = _inputs_kept_in_a_network()
        passed(
            f"the block keeps the non-negative values. In a zero-initialised ResNet-20, "
            f"{share:.0%} of the values entering its blocks are non-negative: each block's input "
            f"comes out of a ReLU (the stem's or the block's before), so {same} of its {n} "
            "blocks start as the identity on every input they will ever see"
        )
        return
    for mistake, key, message in KEPT_MISTAKES:
        if torch.equal(got, mistake(x)):
            raise NotYet(message, key)
    wrong = int((got != truth).sum())
    raise NotYet(
        f"{wrong} of {x.numel()} values are judged wrongly: what does the block compute when its "
        "branch outputs zero?",
        "wrong",
    )


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
    """Chapter 9, predict then run: multiply a transformer block's input by 10; whose output
    grows with it?"""
    guess = choice(prediction, SCALE_CHOICES)
    judge_prediction(guess, measure_scale())
