"""Chapter 2's exercises: the λ-shortcut's gradient measured with autograd, the terms of the
product of (I + J_i) counted, and the Jacobian of two basic blocks composed."""

from __future__ import annotations

import math

import torch
from torch.autograd.functional import jacobian
from torch.overrides import TorchFunctionMode

from resnet_lab.blocks import BasicBlock
from resnet_lab.book.analysis import residual_branch
from resnet_lab.book.exercises.tools import (
    NotYet,
    attempt,
    judge_number,
    judge_outputs,
    number,
    passed,
)

GAIN_CASES = [(0.9, 50), (1.1, 50), (1.0, 30), (0.5, 4), (2.0, 3)]
# what asks autograd for a gradient: torch.autograd.functional and torch.func call grad too
_AUTOGRAD = (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward)


class AutogradCalls(TorchFunctionMode):
    """While active, counts the calls that ask autograd for a gradient (``.backward()``,
    ``torch.autograd.grad``, and what is built on them: ``torch.func``'s transforms,
    ``torch.autograd.functional``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _AUTOGRAD:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _gain_mistakes() -> list[tuple[list[float], str, str]]:
    return [
        (
            [1.0] * len(GAIN_CASES),
            "branch scaled",
            "the gain is 1 whatever λ: λ must scale "
            "the shortcut x, not the branch F (which outputs zero here)",
        ),
        (
            [lam for lam, _ in GAIN_CASES],
            "once",
            "λ is applied once for the whole stack: every block multiplies the gradient by λ",
        ),
        (
            [lam * d for lam, d in GAIN_CASES],
            "sum",
            "your gains add up; a gradient through a stack is a product of the blocks' factors",
        ),
        ([lam ** (d - 1) for lam, d in GAIN_CASES], "one block short", "one block too few"),
        ([lam ** (d + 1) for lam, d in GAIN_CASES], "one block more", "one block too many"),
        (
            [lam**-d for lam, d in GAIN_CASES],
            "inverted",
            "inverted: the gain is the gradient at the input over the gradient at the output",
        ),
        (
            [lam ** (2 * d) for lam, d in GAIN_CASES],
            "squared",
            "squared: compare norms, not squared norms",
        ),
    ]


def check_gradient_gain(gradient_gain) -> None:
    """Chapter 2, exercise 1: the gradient's gain through ``depth`` blocks λx + F(x) with F = 0,
    measured with autograd (a function that never asks autograd for a gradient is named)."""
    got, asked = [], []
    for lam, d in GAIN_CASES:
        with AutogradCalls() as calls:
            gain = attempt(gradient_gain, lam, d, what=f"gradient_gain({lam}, {d})")
        got.append(number(gain, "the gain"))
        asked.append(calls.calls > 0)
    judge_outputs(
        got,
        [lam**d for lam, d in GAIN_CASES],
        _gain_mistakes(),
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-3),
        case=lambda i: "λ = {}, depth {}".format(*GAIN_CASES[i]),
    )
    if not all(asked):
        case = "λ = {}, depth {}".format(*GAIN_CASES[asked.index(False)])
        raise NotYet(
            f"your numbers are right, but for {case} your function never asked autograd for "
            "a gradient (no .backward(), torch.autograd.grad or torch.func): the exercise "
            "measures the gain; let autograd find it, then compare it with what you derived",
            "no autograd",
        )
    passed(
        f"measured with autograd: over 50 blocks the gradient's norm is multiplied by "
        f"{got[0]:.3g} at λ = 0.9 and by {got[1]:.3g} at λ = 1.1; over 30 blocks at λ = 1 by "
        f"{got[2]:.3g}. Only the exact identity leaves it alone (He et al. 2016)"
    )


def check_path_count(n_terms, n_two_branches, blocks: int = 27) -> None:
    """Chapter 2, exercise 2: terms in the expansion of the product of (I + J_i) over 27
    blocks, and those through exactly two residual branches."""
    terms, two = number(n_terms, "n_terms"), number(n_two_branches, "n_two_branches")
    L = blocks
    judge_number(
        terms,
        2**L,
        [
            (
                L + 1,
                "one per block",
                "one term per block, plus the direct path: but every "
                "factor contributes I or J_i, independently of the others",
            ),
            (2 * L, "two per block", "the terms multiply: two choices per factor, 27 factors"),
            (2**L - 1, "no direct path", "you left out the term I·I·...·I, the direct path"),
            (L * L, "squared", "not L²: two choices per factor, 27 factors"),
        ],
        rel=0,
        hint="each factor (I + J_i) contributes either I or J_i to a term",
    )
    judge_number(
        two,
        math.comb(L, 2),
        [
            (
                L * (L - 1),
                "ordered",
                "each pair of branches counted twice: J_j J_i and J_i J_j "
                "are one term (the product keeps the blocks' order)",
            ),
            (L * L, "pairs with repeats", "a term holds each block's J at most once"),
            (2 * L, "two per block", "count the pairs of blocks whose J is picked"),
        ],
        rel=0,
        hint="a term through exactly two branches picks J in two factors, I in the others",
    )
    passed(f"{2**L:,} terms, {math.comb(L, 2)} of them through exactly two branches")


# ---------------------------------------------------------------- two basic blocks


def _two_block_cases(n: int = 6, count: int = 4) -> list[tuple[torch.Tensor, ...]]:
    """Random (J_A, J_B, d_A, d_B): branch Jacobians and 0/1 slopes with both values."""
    g = torch.Generator().manual_seed(2)
    cases = []
    for _ in range(count):
        J_A, J_B = (0.5 * torch.randn(n, n, generator=g, dtype=torch.float64) for _ in "AB")
        d_A, d_B = (torch.tensor([1.0, 0.0] * (n // 2), dtype=torch.float64) for _ in "AB")
        d_A, d_B = d_A[torch.randperm(n, generator=g)], d_B[torch.randperm(n, generator=g)]
        cases.append((J_A, J_B, d_A, d_B))
    return cases


def _variants(J_A, J_B, d_A, d_B) -> dict[str, torch.Tensor]:
    eye = torch.eye(len(J_A), dtype=torch.float64)
    A, B, DA, DB = eye + J_A, eye + J_B, torch.diag(d_A), torch.diag(d_B)
    right = DB @ B @ DA @ A
    return {
        "right": right,
        "no slopes": B @ A,
        "order": DA @ A @ DB @ B,
        "slope on columns": B @ DB @ A @ DA,
        "only B's slope": DB @ B @ A,
        "only A's slope": B @ DA @ A,
        "transposed": right.T,
        "no identity": DB @ J_B @ DA @ J_A,
    }


TWO_BLOCK_MISTAKES = {
    "no slopes": "that is two pre-activation blocks: a basic block ends in a ReLU after the "
    "sum, and its slope belongs in that block's factor",
    "order": "A's factor and B's are in each other's place: x goes through A first, so A's "
    "factor is the one applied to a change of x first, on the right",
    "slope on columns": "the slope is on the wrong side of I + J: the ReLU comes after the sum, "
    "so ReLU' scales the rows of I + J (the outputs), not its columns",
    "only B's slope": "only B's ReLU is there: block A ends in a ReLU too",
    "only A's slope": "only A's ReLU is there: block B ends in a ReLU too",
    "transposed": "transposed: ∂x₂/∂x₀ has a row per output and a column per input",
    "no identity": "the shortcuts' I is missing: that is two plain blocks",
}


def _as_matrix(value, n: int) -> torch.Tensor:
    try:
        m = torch.as_tensor(value, dtype=torch.float64)
    except Exception as e:
        raise NotYet(
            f"return a matrix (a tensor), not {type(value).__name__}: {e}", "type"
        ) from None
    if m.shape != (n, n):
        raise NotYet(f"your Jacobian has shape {tuple(m.shape)}: want ({n}, {n})", "shape")
    return m


def _real_basic_blocks(two_basic_blocks) -> int:
    """The reader's formula on two real BasicBlocks (float64, eval) against autograd's
    Jacobian of B(A(x)); returns how many of its rows the final ReLUs zero."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        A, B = (BasicBlock(2, 2).double().eval() for _ in "AB")
        x0 = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    n = x0.numel()
    x1 = A(x0).detach()
    J_A = jacobian(lambda t: residual_branch(A, t), x0).reshape(n, n)
    J_B = jacobian(lambda t: residual_branch(B, t), x1).reshape(n, n)
    with torch.no_grad():
        d_A = (residual_branch(A, x0) + x0 > 0).double().flatten()
        d_B = (residual_branch(B, x1) + x1 > 0).double().flatten()
    got = _as_matrix(attempt(two_basic_blocks, J_A, J_B, d_A, d_B), n)
    want = jacobian(lambda t: B(A(t)), x0).reshape(n, n)
    if not torch.allclose(got, want, atol=1e-8):
        raise NotYet("right on random matrices but not on two real BasicBlocks", "wrong")
    return int((want.abs().sum(1) == 0).sum())


def check_two_basic_blocks(two_basic_blocks) -> None:
    """Chapter 2, exercise 3: ∂x₂/∂x₀ of two basic blocks, A then B, from their branches'
    Jacobians and their ReLU slopes."""
    cases = _two_block_cases()
    what = "two_basic_blocks(J_A, J_B, d_A, d_B)"
    got = [_as_matrix(attempt(two_basic_blocks, *c, what=what), len(c[0])) for c in cases]
    variants = [_variants(*c) for c in cases]
    judge_outputs(
        got,
        [v["right"] for v in variants],
        [([v[k] for v in variants], k, message) for k, message in TWO_BLOCK_MISTAKES.items()],
        same=lambda a, b: torch.allclose(a, b, atol=1e-9),
        case=lambda i: f"random case {i + 1}",
    )
    zeroed = _real_basic_blocks(two_basic_blocks)
    passed(
        "and on two real BasicBlocks your formula is autograd's Jacobian of B(A(x)); there "
        f"the final ReLUs zero {zeroed} of its 18 rows, shortcut and branch alike"
    )
