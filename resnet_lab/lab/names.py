"""Networks by name: :func:`build_model` builds ``resnet20``, ``plain56``, ``resnet18`` or a
registered name (the article's two, from :mod:`resnet_lab.book.article`), as the command line,
the experiments and the checkpoints' ``build`` name them."""

from __future__ import annotations

import inspect
import re

from torch import nn

from resnet_lab.models import (
    IMAGENET_LAYERS,
    MAX_CIFAR_DEPTH,
    cifar_blocks_per_stage,
    cifar_resnet,
    imagenet_resnet,
)

BUILDERS = {"cifar_resnet": cifar_resnet, "imagenet_resnet": imagenet_resnet}
# Networks defined above the lab register their names here when imported (the article's
# two, ``article`` and ``article_fixed``, from :mod:`resnet_lab.book.article`): the lab never
# imports up.
_OTHERS: dict[str, type[nn.Module]] = {}


def register_model(name: str, builder: type[nn.Module]) -> None:
    """Let :func:`build_model` (and so checkpoints and the CLI) build ``builder`` by ``name``."""
    _OTHERS[name] = builder


def _resolve(name: str) -> tuple:
    """The builder behind a model name and the arguments the name fixes; a ValueError for an
    unknown name."""
    m = re.fullmatch(r"(resnet|plain)(\d+)", name)
    if m and len(m.group(2)) > 9:  # int() of a 5000-digit typo fails with an odd message
        raise ValueError(
            f"depth must be 6n+2 up to {MAX_CIFAR_DEPTH}, got a "
            f"{len(m.group(2))}-digit number in {name[:20]}..."
        )
    if m and m.group(1) == "resnet" and int(m.group(2)) in IMAGENET_LAYERS:
        return imagenet_resnet, {"depth": int(m.group(2))}
    if m:
        return cifar_resnet, {"depth": int(m.group(2)), "skip": m.group(1) == "resnet"}
    if name in _OTHERS:
        return _OTHERS[name], {}
    if name in BUILDERS:
        return BUILDERS[name], {}
    raise ValueError(
        f"unknown model {name!r}; use resnet<6n+2> (resnet20, resnet56, ...), plain<6n+2>, "
        f"resnet18/34/50/101/152 or one of {sorted(_OTHERS)} (the article's networks build by "
        "name once resnet_lab.book.article is imported)"
    )


def _check_arguments(name: str, builder, fixed: dict, kwargs: dict) -> None:
    """Refuse, in one line, arguments that ``builder`` does not take or that ``name`` fixes."""
    if name in BUILDERS and "depth" not in kwargs:
        cifar = name == "cifar_resnet"
        examples = "resnet20 / resnet56 / plain56" if cifar else "resnet18 / resnet50"
        raise ValueError(
            f"{name!r} needs a depth: use {examples} ..., or in Python "
            f"build_model({name!r}, depth=...)"
        )
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        valid = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        raise ValueError(
            f"model {name!r} has no argument {', '.join(map(repr, unknown))} (it takes {valid}); "
            "a checkpoint whose build names it was written by another version of resnet_lab"
        )
    clash = [k for k in kwargs if k in fixed and kwargs[k] != fixed[k]]
    if clash:
        raise ValueError(
            f"model {name!r} fixes {', '.join(f'{k}={fixed[k]!r}' for k in clash)}; "
            f"to change it use build_model({builder.__name__!r}, ...) or another name"
        )


def build_model(name: str, **kwargs) -> nn.Module:
    """A model by name: ``resnet<depth>`` and ``plain<depth>`` for the CIFAR networks (any
    6n+2 depth up to ``MAX_CIFAR_DEPTH``: ``resnet20``, ``plain56``, ``resnet8`` ...), except
    ``resnet18/34/50/101/152``, which are the ImageNet networks as in torchvision; ``article``,
    ``article_fixed`` (:mod:`resnet_lab.book.article`); or a builder, ``cifar_resnet`` /
    ``imagenet_resnet``, with its arguments, a depth among them
    (``build_model("cifar_resnet", depth=20, width=32)``).

    The model remembers how it was built (``model.build_spec``); checkpoints store it, so
    ``build_model(**state["build"])`` rebuilds the network of any checkpoint. Arguments the
    builder does not take (from a checkpoint of another version) raise a one-line ValueError.
    """
    builder, fixed = _resolve(name)
    _check_arguments(name, builder, fixed, kwargs)
    model = builder(**{**fixed, **kwargs})
    if not hasattr(model, "name"):
        model.name = name
    if not hasattr(model, "build_spec"):
        model.build_spec = {"name": name, "kwargs": dict(kwargs)}
    return model


def check_model_name(name: str) -> None:
    """Raise the ValueError of :func:`build_model` for an unknown name, a builder name without
    its depth, or a CIFAR depth that is not 6n+2, without building anything (the CLI checks the
    name before it loads the data)."""
    builder, fixed = _resolve(name)
    _check_arguments(name, builder, fixed, {})
    if builder is cifar_resnet:
        cifar_blocks_per_stage(fixed["depth"])
