"""The optimiser: which parameters train, at which learning rate and weight decay.

``parameter_groups`` gives one group per (learning rate, weight decay): fine-tuning's rates per
part (``TrainConfig.lr_scales``), BN biases at a higher rate (``bn_bias_lr``), BN parameters
without weight decay (``bn_weight_decay=False``). ``make_optimizer`` builds SGD, Adam or AdamW
over them.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from resnet_lab.config import TrainConfig
from resnet_lab.finetune import model_parts, parameter_parts


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: trainable parameters only, one group per learning
    rate. ``cfg.lr_scales`` maps part names of :func:`~resnet_lab.finetune.model_parts`
    (``"stem"``, ``"layer2"``, ``"head"``, or ``"backbone"`` for all but the head) to multipliers of
    ``cfg.lr``; a part's own entry wins over ``"backbone"``; unnamed parts get 1. Batch-norm
    biases are further multiplied by ``cfg.bn_bias_lr``, their weight decay divided by it; with
    ``cfg.bn_weight_decay=False`` no batch-norm parameter is decayed."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters: unfreeze at least one part")
    if not cfg.lr_scales and cfg.bn_bias_lr == 1 and cfg.bn_weight_decay:
        return [{"params": [p for _, p in trainable]}]
    part_of: dict[str, str] = {}
    if cfg.lr_scales:
        known = set(model_parts(model)) | {"backbone"}
        unknown = sorted(set(cfg.lr_scales) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig.lr_scales names unknown parts {unknown}; "
                f"this model's parts are {sorted(known)}"
            )
        part_of = parameter_parts(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bn_biases = {id(m.bias) for m in norms if m.bias is not None}
    bn_params = {id(p) for m in norms for p in m.parameters(recurse=False)}
    groups: dict[tuple[float, float], list] = defaultdict(list)
    for name, p in trainable:
        part = part_of.get(name)
        default = cfg.lr_scales.get("backbone", 1.0) if part != "head" else 1.0
        scale, decay = float(cfg.lr_scales.get(part, default)), cfg.weight_decay
        if id(p) in bn_biases:
            scale, decay = scale * cfg.bn_bias_lr, decay / cfg.bn_bias_lr
        if id(p) in bn_params and not cfg.bn_weight_decay:
            decay = 0.0
        groups[scale, decay].append(p)
    return [
        {"params": ps, "lr": cfg.lr * scale, "lr_scale": scale, "weight_decay": decay}
        for (scale, decay), ps in groups.items()
    ]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    adam = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
