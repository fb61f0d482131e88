"""Fine-tuning: a new head, frozen parts, learning rates per part, pretrained weights.

>>> model = cifar_resnet(20)                                     # doctest: +SKIP
>>> load_pretrained(model, "results/transfer/pretrained.pt")       # our own checkpoint
>>> replace_head(model, 4)                                       # 4 new classes
>>> freeze(model, "backbone")                                    # a linear probe ...
>>> train(model, data, TrainConfig(lr_scales={"backbone": 0.1}))  # ... or a smaller backbone lr

Parts are those of :func:`model_parts`: ``stem``, ``layer1`` ... ``layerN``,
``head``, and ``backbone`` for all but the head. Works for the CIFAR ResNets, their plain twins
and the torchvision-compatible ``resnet18`` ... ``resnet152``.

A frozen part's batch-norm layers stay in evaluation mode during training (the trainer's
:func:`~resnet_lab.train.set_train_mode` sees to it), so their running statistics do not drift
towards the new data: frozen means frozen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from resnet_lab.blocks import check_num_classes
from resnet_lab.checkpoints import CheckpointMismatch, load_checkpoint, model_name
from resnet_lab.models import ResNet, count_params


def _require_resnet(model: nn.Module) -> ResNet:
    if not isinstance(model, ResNet):
        raise TypeError(
            f"expected one of resnet_lab's ResNets (cifar_resnet, resnet18 ...), "
            f"got {type(model).__name__}"
        )
    return model


# ---------------------------------------------------------------------------- parts


def model_parts(model: nn.Module) -> dict[str, list[str]]:
    """The named parts of a :class:`ResNet`, input to output, for freezing and for learning
    rates: ``stem``, ``layer1`` ... ``layerN`` (one per stage) and ``head``. Each part maps to the
    module names it covers. ``backbone`` (everything but the head) is accepted wherever a part
    name is.

    >>> list(model_parts(resnet20()))
    ['stem', 'layer1', 'layer2', 'layer3', 'head']
    """
    model = _require_resnet(model)
    parts = {"stem": ["conv1", "bn1"]}
    for i in range(1, model.num_stages + 1):
        parts[f"layer{i}"] = [f"layer{i}"]
    parts[f"layer{model.num_stages}"].append("final_act")  # pre-activation's last BN-ReLU
    parts["head"] = ["fc"]
    return parts


def part_names(model: nn.Module, parts) -> list[str]:
    """Expand ``parts`` (a name or a list; ``"backbone"`` = all but the head, ``"all"``) into
    the part names of ``model``, refusing unknown names with the list of valid ones."""
    known = list(model_parts(model))
    if isinstance(parts, str):
        parts = [parts]
    if not isinstance(parts, (list, tuple, set, frozenset)):
        raise TypeError(
            f"parts must be a part name or a list of them, one of {known} "
            f"(or 'backbone', 'all'), got {parts!r}"
        )
    out: list[str] = []
    for p in parts:
        if p == "all":
            out += known
        elif p == "backbone":
            out += [k for k in known if k != "head"]
        elif p in known:
            out.append(p)
        else:
            raise ValueError(
                f"unknown part {p!r}; this model's parts are {known} (or 'backbone', 'all')"
            )
    return list(dict.fromkeys(out))


def parameter_parts(model: nn.Module) -> dict[str, str]:
    """The part (see :func:`model_parts`) of every parameter, by parameter name."""
    owner = {m: part for part, mods in model_parts(model).items() for m in mods}
    return {name: owner[name.split(".")[0]] for name, _ in model.named_parameters()}


# ---------------------------------------------------------------------------- heads, freezing


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a new, freshly initialised linear classifier for
    ``num_classes`` classes, in place (on the old head's device and
    dtype). Returns the model.

    (B, 3, H, W) -> (B, num_classes) afterwards. The model's
    ``build_spec`` is updated, so its checkpoints can be rebuilt by
    ``python -m resnet_lab evaluate``.
    """
    model = _require_resnet(model)
    check_num_classes(num_classes)
    old = model.fc
    new = nn.Linear(old.in_features, num_classes)
    model.fc = new.to(device=old.weight.device, dtype=old.weight.dtype)
    spec = getattr(model, "build_spec", None)
    if spec is not None:
        kwargs = {**spec["kwargs"], "num_classes": num_classes}
        model.build_spec = {"name": spec["name"], "kwargs": kwargs}
    return model


def _parameters_of(model: nn.Module, parts) -> list[nn.Parameter]:
    wanted = set(part_names(model, parts))
    part_of = parameter_parts(model)
    return [p for n, p in model.named_parameters() if part_of[n] in wanted]


def freeze(model: nn.Module, parts="backbone") -> nn.Module:
    """Stop training ``parts`` (a part name or a list): their parameters get
    ``requires_grad=False`` and their BN layers keep their running statistics. Returns the model."""
    for p in _parameters_of(model, parts):
        p.requires_grad_(False)
    return model


def unfreeze(model: nn.Module, parts="all") -> nn.Module:
    """Train ``parts`` again (default: everything). Returns the model."""
    for p in _parameters_of(model, parts):
        p.requires_grad_(True)
    return model


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    trainable = count_params(model, trainable_only=True)
    return trainable, count_params(model) - trainable


def trainable_parts(model: nn.Module) -> dict[str, bool]:
    """Whether each part is trainable (any parameter with ``requires_grad``)."""
    return {
        part: any(p.requires_grad for p in _parameters_of(model, part))
        for part in model_parts(model)
    }


# ---------------------------------------------------------------------------- pretrained weights


@dataclass
class Pretrained:
    """What :func:`load_pretrained` (or the ImageNet weights' loader) did. ``loaded`` is False
    when nothing was loaded (offline, say): the model keeps its random weights, as ``message``
    says."""

    loaded: bool
    source: str
    message: str
    # keys not loaded (the head, when its size differs)
    skipped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.loaded


def _fit(model: nn.Module, state: dict, source: str) -> tuple[dict, list[str]]:
    """The part of ``state`` to load into ``model`` and the head keys skipped: every key must
    fit, except the head, which keeps its fresh weights when the number of classes differs."""
    own = model.state_dict()
    head = [k for k in own if k.startswith("fc.")]
    skipped = [k for k in head if k in state and state[k].shape != own[k].shape]
    body = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in body and k not in skipped]
    unexpected = [k for k in body if k not in own]
    wrong = [k for k in body if k in own and body[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} does not fit this {getattr(model, 'name', type(model).__name__)}: "
            f"missing {missing[:4]}, unexpected {unexpected[:4]}, other shapes {wrong[:4]}"
        )
    return body, skipped


def _same_network(model: nn.Module, state: dict) -> bool:
    """Whether a checkpoint's network is ``model``'s, apart from the head's size and the
    initialisation (a ResNet and its plain twin have the same layer shapes: not the same)."""
    theirs, ours = state.get("build"), getattr(model, "build_spec", None)
    if not theirs or not ours:  # older checkpoints: their names, as load_checkpoint compares
        return state.get("model_name") == model_name(model)

    def arch(spec: dict) -> tuple:
        ignored = ("num_classes", "zero_init_residual")
        return spec["name"], sorted((k, v) for k, v in spec["kwargs"].items() if k not in ignored)

    return arch(theirs) == arch(ours)


def load_weights(model: nn.Module, state: dict, source: str) -> Pretrained:
    """Load the state dict ``state`` (from ``source``) into ``model``: all of it, or all but a
    head of another size; any other key or shape that does not fit raises a ValueError."""
    body, skipped = _fit(model, state, source)
    model.load_state_dict({**model.state_dict(), **body})
    what = "all weights but the head (its number of classes differs)" if skipped else "all weights"
    return Pretrained(True, source, f"loaded {what} from {source}", skipped)


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> Pretrained:
    """Load one of our checkpoints or exported weights (``path``) into ``model`` (in place), all
    but a head of another size. The network must be the same apart from the head: a ResNet's
    weights are refused by its plain twin, with
    :class:`~resnet_lab.checkpoints.CheckpointMismatch`. (torchvision's ImageNet weights load
    with :func:`resnet_lab.book.imagenet.load_imagenet_weights`.)"""
    model = _require_resnet(model)
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        imagenet = "resnet_lab.book.imagenet.load_imagenet_weights loads torchvision's weights"
        raise FileNotFoundError(f"no checkpoint at {path}: give a checkpoint's path ({imagenet})")
    state = load_checkpoint(path)
    _fit(model, state["model"], str(path))  # other shapes first: that error names the layers
    if not _same_network(model, state):
        theirs, ours = state.get("model_name"), model_name(model)
        raise CheckpointMismatch(
            f"{path} holds a {theirs} but the model is a {ours}: their layers have the same "
            f"shapes, but they are different networks; build a {theirs} to load it"
        )
    return load_weights(model, state["model"], str(path))
