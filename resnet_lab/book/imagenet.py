"""torchvision's ImageNet weights on CIFAR images: loading them, their own preprocessing, and
fine-tuning.

:func:`load_imagenet_weights` loads them into our ``resnet18`` ... ``resnet152``. ImageNet
networks were trained on photographs resized and cropped to 224 x 224 pixels and
normalised with ImageNet's channel statistics; ``weights.transforms()`` is that preprocessing.
:func:`use_weights_transforms` makes a network apply it to the trainer's CIFAR batches, and
:func:`imagenet_transfer` fine-tunes ResNet-18 from its ImageNet weights that way (chapter 8).
:func:`stage_inputs` shows what a network's parts receive, :func:`imagenet_report` says what
the fine-tuning did (or why it was skipped) and :func:`prediction_grid` picks the test images
whose predictions the chapter shows.

The weights need a download. torchvision checks it: ``load_state_dict_from_url(check_hash=True)``
compares the file's SHA-256 with the hash prefix in its name (``resnet18-f37072fd.pth``).
Offline nothing is trained, and :class:`ImageNetRun` says what was skipped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from resnet_lab.book.style import fit
from resnet_lab.checkpoints import CheckpointMismatch, History, model_name
from resnet_lab.cifar10 import MEAN, STD, CifarData
from resnet_lab.config import TrainConfig
from resnet_lab.evaluation import eval_mode, predict
from resnet_lab.finetune import Pretrained, load_weights
from resnet_lab.loader import CifarLoader
from resnet_lab.models import ResNet, resnet18
from resnet_lab.train import seed_everything, train


class PretrainedNotLoaded(UserWarning):
    """:func:`load_imagenet_weights` loaded nothing (offline, say): the model keeps its random
    weights. ``warnings.simplefilter("error", PretrainedNotLoaded)`` makes it an error."""


def load_imagenet_weights(
    model: ResNet, weights="DEFAULT", *, progress: bool = False, warn: bool = True
) -> Pretrained:
    """Load torchvision's ImageNet weights into our ``resnet18`` ... ``resnet152`` (in place),
    all but a head of another size. ``weights`` is a ``weights=`` enum
    (``torchvision.models.ResNet18_Weights.IMAGENET1K_V1``) or its name (``"IMAGENET1K_V1"``,
    ``"DEFAULT"``); they are downloaded once, and torchvision checks the file's hash.

    Offline, or whenever a download fails, nothing is loaded and nothing is raised: the returned
    :class:`~resnet_lab.finetune.Pretrained` is false, and its one-line ``message``, also issued
    as a :class:`PretrainedNotLoaded` warning (``warn=False``: not issued, for a caller that
    prints the message itself), says what was skipped and that the model keeps its random
    weights, so a chapter can go on and never passes random weights off as pretrained.
    """
    enum, depth = _weights_enum(model, weights)
    if isinstance(weights, str):
        names = [w.name for w in enum] + ["DEFAULT"]
        if weights not in names:
            raise ValueError(
                f"{weights!r} is not a weight set of torchvision's resnet{depth}; give one of "
                f"{names}"
            )
        weights = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    if not isinstance(weights, enum):
        raise ValueError(f"{weights} are not weights of torchvision's resnet{depth}")
    source = f"torchvision {enum.__name__}.{weights.name}"
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True)
    except Exception as e:  # offline: URLError, OSError, RuntimeError; a bad hash: RuntimeError
        why = (
            "offline, or no network" if isinstance(e, OSError) else "download or hash check failed"
        )
        reason = " ".join(str(e).split())[:100]
        message = (
            f"{source} not loaded: could not download them ({why}; {type(e).__name__}: "
            f"{reason}); the model keeps its random weights"
        )
        if warn:
            warnings.warn(message, PretrainedNotLoaded, stacklevel=2)
        return Pretrained(False, source, message)
    return load_weights(model, state, source)


def _weights_enum(model: ResNet, weights):
    """torchvision's weight enum for ``model`` (an ImageNet ResNet), refusing what cannot fit."""
    import torchvision  # 1.2 s to import: only when ImageNet weights are asked for

    spec = getattr(model, "build_spec", None) or {}
    depth = spec.get("kwargs", {}).get("depth")
    if spec.get("name") != "imagenet_resnet" or depth is None:
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


def use_weights_transforms(model: nn.Module, weights) -> RemovableHandle:
    """Make ``model`` see its input as ``weights`` were trained to.

    A forward pre-hook runs ``weights.transforms()`` on every batch
    (ResNet-18: resize to 256, centre crop 224, ImageNet mean and
    std). The trainer's loader yields CIFAR-normalised batches; the
    hook first undoes that normalisation, back to pixels in [0, 1]:
    (B, 3, 32, 32) -> (B, 3, 224, 224). Returns the hook's handle
    (``handle.remove()`` undoes it).
    """
    transform = weights.transforms(antialias=True)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)

    def hook(module, args):
        x = args[0]
        pixels = x.float() * std.to(x.device) + mean.to(x.device)
        return (transform(pixels).to(x.dtype), *args[1:])

    return model.register_forward_pre_hook(hook)


@dataclass
class ImageNetRun:
    """What :func:`imagenet_transfer` did. ``pretrained`` says whether the ImageNet weights
    were loaded (its ``message`` says why not); only then are ``model`` (adapted, the
    transforms attached), its ``history`` and the ``data`` it trained and was tested on set."""

    pretrained: Pretrained
    model: nn.Module | None = None
    history: History | None = None
    data: CifarData | None = None


def imagenet_transfer(
    data: CifarData,
    *,
    labels_per_class: int = 50,
    steps: int = 15,
    test_images: int = 400,
    seed: int = 0,
    weights=None,
    progress: bool = False,
) -> ImageNetRun:
    """Fine-tune ResNet-18 from ``weights`` (default: torchvision's ``IMAGENET1K_V1``) on
    ``labels_per_class`` images of each class of ``data``, seen through the weights' own
    transforms; a new head at lr 0.01, the backbone at a tenth of it, about ``steps`` steps of
    one-cycle SGD; tested on ``test_images`` class-balanced test images. Offline, or when the
    download or its hash check fails, nothing is trained (see :class:`ImageNetRun`)."""
    import torchvision  # 1.2 s to import: only here

    weights = weights or torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    seed_everything(seed)
    net = resnet18(num_classes=len(data.classes))
    loaded = load_imagenet_weights(net, weights, warn=False)
    if not loaded:
        return ImageNetRun(loaded)
    use_weights_transforms(net, weights)
    few = data.subset(labels_per_class * len(data.classes), test_images, seed=seed)
    batch = min(50, len(few.train_labels))
    epochs = max(1, round(steps / (len(few.train_labels) // batch)))
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch,
        lr=0.01,
        lr_scales={"backbone": 0.1},
        schedule="onecycle",
        warmup=0.1 * epochs,
        nesterov=True,
        weight_decay=5e-4,
        seed=seed,
        eval_every=epochs,
    )
    history = train(net, few, cfg, progress=progress)
    return ImageNetRun(loaded, net, history, few)


def stage_inputs(
    model: nn.Module, x: torch.Tensor, names: tuple[str, ...] = ("conv1", "layer1")
) -> dict[str, torch.Tensor]:
    """What the parts ``names`` of ``model`` receive when it runs on the batch ``x`` in eval
    mode: ``{name: input tensor}`` (ResNet-18 without the transforms, on (B, 3, 32, 32): conv1
    gets (B, 3, 32, 32), layer1 (B, 64, 8, 8)). The hooks are removed afterwards."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model, name).register_forward_pre_hook(
            lambda m, args, name=name: seen.setdefault(name, args[0])
        )
        for name in names
    ]
    try:
        with eval_mode(model):
            model(x.to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def imagenet_report(run: ImageNetRun | None, offline: Pretrained, steps: int) -> str:
    """A sentence, wrapped to the page, on what :func:`imagenet_transfer` did on this
    machine: "ran here" with what it loaded, on how many images, for how many ``steps``, and
    its test accuracy; or "skipped here" and why (``run``'s message, or ``offline``'s when it
    was not even tried: ``run`` is None)."""
    if run is not None and run.pretrained:
        few = run.data
        return fit(
            f"ran here: {run.pretrained.message}; fine-tuned on {len(few.train_labels)}"
            f" labelled images for {len(run.history)} epochs (about {steps} steps):"
            f" {100 * run.history.final['test_acc']:.1f}% test accuracy"
            f" on {len(few.test_labels)} test images of its {len(few.classes)} classes"
        )
    why = (run.pretrained if run is not None else offline).message
    return fit(
        f"skipped here: {why}. No ImageNet network was fine-tuned, so no accuracy"
        " or predictions of one appear on this page."
    )


def prediction_grid(
    run: ImageNetRun, per_class: int = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``per_class`` test images of each class of ``run.data``, class by class, with
    what ``run.model`` predicts for them and their true labels: (images (N, 3, H, W) uint8,
    predicted (N,), labels (N,)), for :func:`resnet_lab.book.mistakes.show_predictions`."""
    if run.model is None:
        raise ValueError(
            f"no fine-tuned network to predict with ({run.pretrained.message}): "
            "call prediction_grid only when run.pretrained is true"
        )
    labels = run.data.test_labels
    classes = range(len(run.data.classes))
    grid = torch.cat([torch.nonzero(labels == c)[:per_class, 0] for c in classes])
    images = run.data.test_images[grid]
    loader = CifarLoader(images, labels[grid], len(grid), train=False)
    return images, predict(run.model, loader).argmax(1), labels[grid]
