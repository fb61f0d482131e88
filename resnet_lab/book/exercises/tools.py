"""What the checks behind the chapters' exercises share.

One pattern in every chapter: the reader's cell holds a stub (``answer = None``, or a function
whose body is ``raise NotImplementedError``); the check cell below it, tagged
``raises-exception``, calls ``check_...(answer)``. A check

- raises :class:`NotAttempted` while the stub is unchanged;
- raises :class:`NotYet` for a wrong answer, with the mistake it saw in one line ("your block
  uses bn1 twice and never bn2") and a short key, ``mistake``, that the tests read;
- prints "correct! ..." for a right one. It judges by behaviour on inputs of its own, with
  random numbers from its own generator, so every correct answer passes, whatever the reader's
  seed, and the reader's random state is left as it was.

In a notebook IPython shows a :class:`NotYet` as its one line, without a traceback.

:func:`check_block` judges a block the reader wrote: it gives every layer random parameters of
its own (so that two layers of one shape can no longer stand in for each other), records the
order in which the layers are called, and compares the output with the block's formula computed
from the reader's own layers. Names, registration order and the reader's seed do not matter; a
layer used twice, two layers swapped, a missing ReLU or sum are each named.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin


class NotYet(AssertionError):
    """A wrong answer: the message names the mistake; ``mistake`` is its short key."""

    def __init__(self, message: str, mistake: str = "wrong") -> None:
        super().__init__(message)
        self.mistake = mistake

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the message, no traceback, in lines that fit the book's column
        (77 characters)."""
        return textwrap.wrap(f"{type(self).__name__}: {self}", 77, subsequent_indent="  ")


class NotAttempted(NotYet):
    """The reader's stub is still there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "not attempted")


def passed(message: str) -> None:
    print(f"correct! {message}")


def attempt(fn: Any, *args: Any, what: str = "your function") -> Any:
    """``fn(*args)``; the stub's NotImplementedError becomes NotAttempted, any other error a
    NotYet that quotes it."""
    if fn is None or not callable(fn):
        raise NotAttempted(
            f"{what} is not defined yet: write it in the cell above, then run this cell"
        )
    try:
        return fn(*args)
    except NotImplementedError:
        raise NotAttempted(
            f"{what} still raises NotImplementedError: replace the stub, then run this cell"
        ) from None
    except NotYet:
        raise
    except Exception as e:
        raise NotYet(
            f"{what} raised {type(e).__name__}: {_one_line(str(e), 200)}", "raised"
        ) from None


def _one_line(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters: a verdict is one line."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(value: Any, width: int = 60) -> str:
    return _one_line(repr(value), width)


def _one_value(value: Any, name: str) -> Any:
    """A tensor or array of one element as that element; any other tensor a NotYet."""
    if isinstance(value, torch.Tensor):
        if value.is_meta:
            raise NotYet(
                f"{name} is a tensor on the meta device, which holds no value: compute it "
                "on the CPU (or call .item() on a real tensor)",
                "not a number",
            )
        if value.numel() != 1:
            raise NotYet(
                f"{name} must be one number, got a tensor of shape {tuple(value.shape)}",
                "not a number",
            )
        return value.item()
    if type(value).__module__ == "numpy" and getattr(value, "size", None) == 1:
        return value.item()  # a numpy scalar or one-element array
    return value


def _magnitude(value: numbers.Real) -> str:
    """How large a number too large for a float is, without printing its digits."""
    try:
        return f"about 10^{int(math.log10(abs(value)))}"
    except (OverflowError, ValueError):
        return "too large for a float"


def number(value: Any, name: str = "answer") -> float:
    """``value`` as a float; None is NotAttempted, anything but a real number a NotYet."""
    if value is None:
        raise NotAttempted(f"set {name} in the cell above, then run this cell")
    value = _one_value(value, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NotYet(f"{name} must be a number, got {_short(value)}", "not a number")
    try:
        as_float = float(value)  # numpy's scalars too
    except OverflowError:
        raise NotYet(
            f"{name} is {_magnitude(value)}: far beyond any answer here", "too large"
        ) from None
    if math.isnan(as_float):
        raise NotYet(f"{name} is NaN (not a number): compute a real value", "not a number")
    return as_float


def choice(value: Any, choices: Sequence[str], name: str = "prediction") -> str:
    """``value`` as one of ``choices`` (case and spaces ignored); None is NotAttempted."""
    listed = ", ".join(repr(c) for c in choices)
    if value is None:
        raise NotAttempted(f"set {name} to one of {listed} in the cell above, then run this cell")
    key = str(value).strip().lower() if isinstance(value, str) else None
    if key not in choices:
        raise NotYet(f"{name} must be one of {listed}, got {_short(value)}", "not a choice")
    return key


def choices(value: Any, options: Sequence[str], name: str = "answer") -> set[str]:
    """``value`` (one option or a collection of them) as a set of ``options``."""
    if value is None:
        raise NotAttempted(
            f"set {name} to a set of {sorted(options)} in the cell above, then run this cell"
        )
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (set, frozenset, list, tuple)):
        items = list(value)
    else:
        raise NotYet(
            f"{name} must be one of {sorted(options)} or a set of them, like "
            f"{{{options[0]!r}}}; got {_short(value)}",
            "not a choice",
        )
    picked = {str(v).strip().lower() for v in items}
    unknown = sorted(picked - set(options))
    if unknown:
        raise NotYet(f"{name}: {unknown} not among the options {sorted(options)}", "not a choice")
    return picked


@dataclass
class Measurement:
    """What a "predict, then run" cell measured, as one of its prediction's choices."""

    truth: str
    why: str  # said to a wrong prediction, after what was measured
    right: str  # said to a right one


def judge_prediction(guess: str, measured: Measurement) -> None:
    """Pass a prediction that is what was measured; name a wrong one."""
    if guess != measured.truth:
        raise NotYet(
            f"you predicted {guess!r}; measured: {measured.truth!r}. {measured.why}",
            f"predicted {guess}",
        )
    passed(measured.right)


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def judge_number(
    got: float,
    want: float,
    mistakes: Iterable[tuple[float, str, str]],
    *,
    rel: float = 1e-6,
    hint: str,
) -> None:
    """Pass when ``got`` is ``want``; else name the first mistake ``(value, key, message)``
    whose value it is, or say ``hint``."""
    if close(got, want, rel):
        return
    for value, key, message in mistakes:
        if close(got, value, rel):
            raise NotYet(message, key)
    raise NotYet(f"{got:g} is not it: {hint}", "wrong")


def _never_raises(same: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def safe(a: Any, b: Any) -> bool:
        try:
            return bool(same(a, b))
        except Exception:  # the reader's value is of a kind ``same`` does not take
            return False

    return safe


def judge_outputs(
    got: Sequence[Any],
    want: Sequence[Any],
    mistakes: Iterable[tuple[Sequence[Any], str, str]],
    *,
    same: Callable[[Any, Any], bool],
    case: Callable[[int], str],
) -> None:
    """Pass when every output in ``got`` is the wanted one. Else name the mistake whose
    outputs match all of ``got``, or describe the first case that differs. An output that
    ``same`` cannot compare (another type, an array) is not the same."""
    same = _never_raises(same)
    if all(same(g, w) for g, w in zip(got, want)):
        return
    for outputs, key, message in mistakes:
        if all(same(g, o) for g, o in zip(got, outputs)):
            raise NotYet(message, key)
    i = next(i for i, (g, w) in enumerate(zip(got, want)) if not same(g, w))
    raise NotYet(f"wrong on {case(i)}: got {_short(got[i])}, want {_short(want[i])}", "wrong")


# ---------------------------------------------------------------------------- modules


def require_layers(module: nn.Module, names: Sequence[str], what: str) -> None:
    """NotYet unless ``module`` has each of ``names`` as a layer (the check calls them)."""
    missing = [n for n in names if not isinstance(getattr(module, n, None), nn.Module)]
    if missing:
        have = [n for n, _ in module.named_children()] or ["none"]
        raise NotYet(
            f"{what} has no layer named {', '.join(missing)} (it has {', '.join(have)}): the "
            "check calls the layers by the names the exercise gives them",
            "layer names",
        )


@contextlib.contextmanager
def recording_calls(module: nn.Module, names: Sequence[str]):
    """While active, each call of the submodule ``module.<name>`` appends its name to the
    yielded list, in the order of the calls."""
    calls: list[str] = []
    handles = [
        getattr(module, n).register_forward_hook(lambda _m, _i, _o, n=n: calls.append(n))
        for n in names
    ]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def judge_call_order(calls: list[str], expected: Sequence[str], what: str) -> None:
    """Name the mistake when the layers of ``what`` were not each called once, in order."""
    for name in expected:
        if calls.count(name) > 1:
            never = [n for n in expected if n not in calls]
            rest = f" and never {' or '.join(never)}" if never else ""
            raise NotYet(
                f"{what} uses {name} {calls.count(name)} times{rest}: each layer has its own "
                "parameters and must be applied once",
                f"reused {name}",
            )
    never = [n for n in expected if n not in calls]
    if never:
        raise NotYet(f"{what} never uses {', '.join(never)}", "unused layer")
    if list(calls) != list(expected):
        wrong = [i for i, (c, e) in enumerate(zip(calls, expected)) if c != e]
        if len(wrong) == 2:
            a, b = (expected[i] for i in wrong)
            raise NotYet(
                f"{what} applies {a} and {b} in each other's place ({' -> '.join(calls)}; "
                f"the order is {' -> '.join(expected)}): they hold different parameters",
                f"swapped {a} {b}",
            )
        raise NotYet(
            f"{what} applies {' -> '.join(calls)}; the order is {' -> '.join(expected)}", "order"
        )


def randomize_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every parameter, and every BN's running statistics, random values of its own, so
    that two layers of the same shape can no longer stand in for each other."""
    lazy = [type(m).__name__ for m in module.modules() if isinstance(m, LazyModuleMixin)]
    if lazy:
        raise NotYet(
            f"your block has lazy layers ({', '.join(lazy)}): give each its input size, so "
            "that its parameters exist before the first input",
            "parameters",
        )
    if any(p.is_meta for p in module.parameters()):
        raise NotYet(
            "your block's parameters are on the meta device: build it on the CPU", "parameters"
        )
    try:
        return _randomize(module, generator)
    except (ValueError, RuntimeError, NotImplementedError) as e:  # lazy or meta parameters
        raise NotYet(
            f"the check cannot set your block's parameters ({type(e).__name__}: "
            f"{_one_line(str(e), 80)}): build its layers with their sizes, on the CPU",
            "parameters",
        ) from None


@torch.no_grad()
def _randomize(module: nn.Module, generator: torch.Generator) -> nn.Module:
    for m in module.modules():
        norm = isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm))
        for name, p in m.named_parameters(recurse=False):
            scale = 0.5 / math.sqrt(p[0].numel()) if p.dim() > 1 else 0.3
            noise = torch.randn(p.shape, generator=generator)
            p.copy_(1 + 0.5 * noise if norm and name == "weight" else scale * noise)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))
    return module


def build(cls: Any, *args: Any, what: str) -> nn.Module:
    """The reader's module, built with the reader's random state left as it was."""
    if isinstance(cls, nn.Module):
        raise NotYet(
            f"pass the class itself, {type(cls).__name__}, not a module built from it", "instance"
        )
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise NotAttempted(f"{what} is not an nn.Module class yet: write it in the cell above")
    with torch.random.fork_rng(devices=[]):
        try:
            return cls(*args)
        except Exception as e:
            raise NotYet(
                f"{what}({', '.join(map(repr, args))}) raised {type(e).__name__}: "
                f"{_one_line(str(e), 200)}",
                "raised",
            ) from None


def same_tensor(a: Any, b: Any) -> bool:
    """``a`` is a real tensor of ``b``'s shape and values (any dtype or device)."""
    if not isinstance(a, torch.Tensor) or a.is_meta or a.shape != b.shape:
        return False
    if a.is_complex() or a.dtype == torch.bool:
        return False
    a = a.detach().to("cpu", torch.float64)
    return torch.allclose(a, b.detach().to(torch.float64), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- blocks

Variant = tuple[Callable[[nn.Module, torch.Tensor], torch.Tensor], str, str]


def check_block(
    block: nn.Module,
    x: torch.Tensor,
    *,
    order: list[str],
    reference: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    variants: list[Variant],
    what: str,
    explain_order: Callable[[list[str]], tuple[str, str] | None] = lambda calls: None,
) -> None:
    """Judge ``block`` (randomised already) on ``x``: its layers called once each in ``order``
    (``explain_order(calls)`` may name a known wrong order), then its output against
    ``reference(block, x)``, in eval and in train mode, naming the variant it computes."""
    require_layers(block, order, what)
    probe = _copy(block, "eval", what)
    with recording_calls(probe, order) as calls:
        try:
            attempt(probe, x, what=what)
        except NotYet as e:
            if e.mistake != "raised":
                raise
            known = explain_order(calls)
            if known:
                raise NotYet(*known) from None
            ran = " -> ".join(calls) or "nothing"
            raise NotYet(
                f"{e} (after {ran}; the order is {' -> '.join(order)})", "raised"
            ) from None
    known = explain_order(calls)
    if known:
        raise NotYet(*known)
    judge_call_order(calls, order, what)
    for mode in ("eval", "train"):
        _judge_output(block, x, mode, reference, variants, what)


def _copy(block: nn.Module, mode: str, what: str) -> nn.Module:
    try:
        return copy.deepcopy(block).train(mode == "train")
    except Exception as e:
        raise NotYet(
            f"{what} cannot be copied ({type(e).__name__}: {_one_line(str(e), 80)}): keep only "
            "layers and numbers in it",
            "cannot copy",
        ) from None


@torch.no_grad()
def _judge_output(block, x, mode: str, reference, variants: list[Variant], what: str) -> None:
    """``block``'s output in ``mode`` against the reference's; name the variant it computes."""
    got = attempt(_copy(block, mode, what), x, what=f"{what} ({mode} mode)")
    if not isinstance(got, torch.Tensor):
        raise NotYet(f"{what} returns {_short(got)}: return the output tensor", "not a tensor")
    try:
        want = reference(_copy(block, mode, what), x)
    except Exception as e:  # the reader's layers do not fit the description
        raise NotYet(
            f"{what}'s layers do not fit the description ({type(e).__name__}: "
            f"{_one_line(str(e), 100)}): check each layer's sizes",
            "layers",
        ) from None
    if same_tensor(got, want):
        return
    for fn, key, message in variants:
        try:
            theirs = fn(_copy(block, mode, what), x)
        except Exception:
            continue
        if same_tensor(got, theirs):
            # the stub itself, where a chapter shows one to fix, is not yet an attempt
            raise NotAttempted(message) if key == "not attempted" else NotYet(message, key)
    raise NotYet(
        f"{what} computes something else ({mode} mode): compare it with the "
        "description line by line",
        "wrong",
    )
