"""Published weights of another reproduction, loaded into ours: akamaster/pytorch_resnet_cifar10,
whose option-A padding :class:`~resnet_lab.blocks.PadShortcut` follows (chapter 4), so that its
networks give the same outputs in ours. ``results/cifar10_jpeg_copy.json`` measured with them
what the JPEG copy of CIFAR-10 costs published weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from resnet_lab.models import ResNet


def load_reference_weights(model: ResNet, state_dict: Mapping[str, torch.Tensor]) -> ResNet:
    """Load a checkpoint of akamaster/pytorch_resnet_cifar10 into a :func:`cifar_resnet`.

    Its keys (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``linear``, with a ``module.``
    prefix when saved from ``DataParallel``; the file itself holds them under
    ``"state_dict"``) are renamed to ours (``linear`` -> ``fc``, ``shortcut`` ->
    ``downsample``). A checkpoint of another depth raises a ValueError naming both depths.
    Returns the model, in place.
    """
    if "state_dict" in state_dict and not isinstance(state_dict["state_dict"], torch.Tensor):
        state_dict = state_dict["state_dict"]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("linear."):
            key = "fc." + key[len("linear.") :]
        key = key.replace(".shortcut.", ".downsample.")
        renamed[key] = value

    def blocks_in(keys) -> int:
        return len({k.split(".")[1] for k in keys if k.startswith("layer1.")})

    theirs, ours = blocks_in(renamed), blocks_in(model.state_dict())
    if theirs != ours:
        raise ValueError(
            f"checkpoint is a ResNet-{6 * theirs + 2} ({theirs} blocks per stage) but the model "
            f"is a ResNet-{6 * ours + 2} ({ours} blocks per stage): build the model with "
            f"cifar_resnet({6 * theirs + 2})"
        )
    # checkpoints from older torch lack BN's num_batches_tracked buffers; keep ours for those
    own = model.state_dict()
    missing = [k for k in own if k not in renamed and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in renamed if k not in own]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not fit this model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for k in own:
        renamed.setdefault(k, own[k])
    model.load_state_dict(renamed)
    return model
