"""Fine-tuning: a new head, frozen parts, learning rates per part, pretrained weights.

>>> model = cifar_resnet(20)                                     # doctest: +SKIP
>>> load_pretrained(model, "results/finetune/pretrained_animals.pt")  # our own checkpoint
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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from resnet_lab.blocks import check_num_classes
from resnet_lab.checkpoints import CheckpointMismatch, load_checkpoint, model_name
from resnet_lab.models import IMAGENET_LAYERS, ResNet, count_params


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
    """What :func:`load_pretrained` did. ``loaded`` is False when nothing was loaded (offline,
    say): the model then keeps its own random weights and ``message`` says so."""

    loaded: bool
    source: str
    message: str
    # keys not loaded (the head, when its size differs)
    skipped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.loaded


class PretrainedNotLoaded(UserWarning):
    """:func:`load_pretrained` loaded nothing (offline, say): the model keeps its random weights.
    ``warnings.simplefilter("error", PretrainedNotLoaded)`` makes it an error."""


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


def _load_backbone(model: nn.Module, state: dict, source: str) -> Pretrained:
    """Load ``state`` into ``model``: all of it, or all but a head of another size."""
    body, skipped = _fit(model, state, source)
    model.load_state_dict({**model.state_dict(), **body})
    what = "all weights but the head (its number of classes differs)" if skipped else "all weights"
    return Pretrained(True, source, f"loaded {what} from {source}", skipped)


def _is_path(source) -> bool:
    """A checkpoint rather than a torchvision weight name: a Path, or a str that ends in .pt or
    .pth, has a folder separator, or names an existing file."""
    if isinstance(source, os.PathLike):
        return True
    if not isinstance(source, str):
        return False
    looks_like_path = Path(source).suffix in (".pt", ".pth") or "/" in source or os.sep in source
    return looks_like_path or Path(source).is_file()


def load_pretrained(
    model: nn.Module, source, *, progress: bool = False, warn: bool = True
) -> Pretrained:
    """Load pretrained weights into ``model`` (in place), all but a head of another size.

    ``source`` is
    - a path to one of our checkpoints or exported weights (a ``Path``, or a string that ends
      in ``.pt``/``.pth``, holds a ``/`` or names an existing file, whatever its suffix): the
      network must be the same apart from the head (a ResNet's weights are refused by its
      plain twin, with :class:`~resnet_lab.checkpoints.CheckpointMismatch`); or
    - torchvision ImageNet weights for our ``resnet18`` ... ``resnet152``: a ``weights=`` enum
      (``torchvision.models.ResNet18_Weights.IMAGENET1K_V1``) or its name (``"IMAGENET1K_V1"``,
      ``"DEFAULT"``). They are downloaded once, and torchvision checks the file's hash.

    Offline, or whenever a download fails, nothing is loaded and nothing is raised: the returned
    :class:`Pretrained` is false, and its one-line ``message``, also issued as a
    :class:`PretrainedNotLoaded` warning (``warn=False``: not issued, for a caller that prints
    the message itself), says what was skipped and that the model keeps its random weights, so a
    chapter can go on and never passes random weights off as pretrained.
    """
    model = _require_resnet(model)
    if _is_path(source):
        state = load_checkpoint(source)
        _fit(model, state["model"], str(source))  # other shapes first: that error names the layers
        if not _same_network(model, state):
            theirs, ours = state.get("model_name"), model_name(model)
            raise CheckpointMismatch(
                f"{source} holds a {theirs} but the model is a {ours}: their layers have the same "
                f"shapes, but they are different networks; build a {theirs} to load it"
            )
        return _load_backbone(model, state["model"], str(source))
    result = _load_torchvision(model, source, progress)
    if not result and warn:
        warnings.warn(result.message, PretrainedNotLoaded, stacklevel=2)
    return result


def _weights_enum(model: ResNet, weights):
    """torchvision's weight enum for ``model`` (an ImageNet ResNet), refusing what cannot fit."""
    import torchvision  # 1.2 s to import: only when ImageNet weights are asked for

    spec = getattr(model, "build_spec", None) or {}
    depth = spec.get("kwargs", {}).get("depth")
    if spec.get("name") != "imagenet_resnet" or depth is None:
        names = {"DEFAULT"} | {
            w.name
            for d in IMAGENET_LAYERS
            for w in torchvision.models.get_model_weights(f"resnet{d}")
        }
        if isinstance(weights, str) and weights not in names:
            raise ValueError(
                f"{weights!r} is neither an existing file nor a torchvision weight "
                f"name ({sorted(names)}, for resnet18 ... resnet152)"
            )
        raise ValueError(
            "torchvision's ImageNet weights fit only our ImageNet ResNets (resnet18 ... resnet152)"
        )
    if not model.skip:
        raise CheckpointMismatch(
            f"torchvision's resnet{depth} weights are a ResNet's but the model is a "
            f"{model_name(model)}: their layers have the same shapes, but they are different "
            f"networks; build resnet{depth}() to load them"
        )
    return torchvision.models.get_model_weights(f"resnet{depth}"), depth


def _load_torchvision(model: ResNet, weights, progress: bool) -> Pretrained:
    enum, depth = _weights_enum(model, weights)
    if isinstance(weights, str):
        names = [w.name for w in enum] + ["DEFAULT"]
        if weights not in names:
            raise ValueError(
                f"{weights!r} is neither an existing file nor a weight set of "
                f"torchvision's resnet{depth}; give a checkpoint path or one of "
                f"{names}"
            )
        weights = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    if not isinstance(weights, enum):
        raise ValueError(f"{weights} are not weights of torchvision's resnet{depth}")
    source = f"torchvision {enum.__name__}.{weights.name}"
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True)
    except Exception as e:  # offline: URLError, OSError, RuntimeError; a bad hash: RuntimeError
        offline = isinstance(e, OSError)  # URLError is one
        why = "offline, or no network" if offline else "download or hash check failed"
        reason = " ".join(str(e).split())[:100]
        message = (
            f"{source} not loaded: could not download them ({why}; {type(e).__name__}: "
            f"{reason}); the model keeps its random weights"
        )
        return Pretrained(False, source, message)
    return _load_backbone(model, state, source)
