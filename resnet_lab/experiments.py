"""Named experiments whose results the book plots: each trains a model with a fixed recipe
and writes the trainer's History JSON to ``results/<name>.json``.

Run one with ``python -m resnet_lab experiment cpu_resnet20`` (resumable: a checkpoint is kept
in ``runs/<name>/``). The numbers quoted in the docstrings come from the runs in ``results/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from resnet_lab.train import History, TrainConfig

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


@dataclass(frozen=True)
class Experiment:
    """A model (by :func:`~resnet_lab.models.build_model` name and arguments) and a recipe."""

    model: str
    config: TrainConfig
    model_kwargs: dict = field(default_factory=dict)
    description: str = ""
    subset: int | None = None  # class-balanced training subset (None: all 50,000 images)
    keep_weights: bool = False  # also save the trained weights beside the JSON (for lesion studies)


EXPERIMENTS: dict[str, Experiment] = {
    # The paper's ResNet-20 in a 20-minute CPU budget: bf16 autocast + channels_last +
    # torch.compile for speed, a one-cycle schedule with Nesterov momentum, label smoothing and
    # flip test-time augmentation for accuracy in few epochs.
    "cpu_resnet20": Experiment(
        model="resnet20",
        config=TrainConfig(
            epochs=34, batch_size=256, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
            schedule="onecycle", warmup=2, label_smoothing=0.1, channels_last=True, compile=True,
            precision="bf16", tta=True, eval_every=2,
        ),
        description="ResNet-20 (He et al. 2015), 20-minute CPU budget",
    ),
    # Speed run: a wider, shallower CIFAR ResNet (14 layers at twice the paper's width, as in the
    # wide-ResNet line of work) with the same speed settings, plus 1-pixel translation views in
    # the test-time augmentation (airbench). 21 epochs fill the 20-minute budget on 2 cores.
    "cpu_speedrun": Experiment(
        model="resnet14",
        model_kwargs={"width": 32},
        config=TrainConfig(
            epochs=21, batch_size=256, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
            schedule="onecycle", warmup=2, label_smoothing=0.1, channels_last=True, compile=True,
            precision="bf16", tta=True, tta_translate=True, eval_every=3,
        ),
        description="speed run: ResNet-14 at width 32, goal 90% in 20 CPU minutes",
    ),
}

# The degradation problem (He et al. 2015, Fig. 1) at CPU scale: plain and residual networks of
# depth 20 and 56, same recipe, a 10,000-image class-balanced subset, training error recorded.
_DEGRADATION = TrainConfig(
    epochs=15, batch_size=128, lr=0.1, nesterov=True, weight_decay=5e-4, schedule="onecycle", warmup=1,
    channels_last=True, compile=True, precision="bf16", eval_every=3,
)
for _name in ("plain20", "plain56", "resnet20", "resnet56"):
    EXPERIMENTS[f"degradation/{_name}"] = Experiment(
        model=_name, config=_DEGRADATION, subset=10_000, keep_weights=_name.endswith("20"),
        description="degradation problem at CPU scale (He et al. 2015, Fig. 1)",
    )


def experiment_names(name: str) -> list[str]:
    """``name`` itself, or every experiment of the group ``name/...``."""
    if name in EXPERIMENTS:
        return [name]
    group = sorted(n for n in EXPERIMENTS if n.startswith(name + "/"))
    if not group:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)} or a group "
                         f"{sorted({n.split('/')[0] for n in EXPERIMENTS if '/' in n})}")
    return group


def run_experiment(name: str, *, data=None, out: str | Path | None = None, progress: bool = True,
                   runs_dir: str | Path = "runs", **overrides) -> History:
    """Train experiment ``name`` (resuming from ``runs/<name>/`` if interrupted) and save its
    History to ``out`` (default ``results/<name>.json``). ``overrides`` replace config fields."""
    from resnet_lab.data import load_cifar10
    from resnet_lab.models import build_model
    from resnet_lab.train import train

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    cfg = replace(exp.config, **overrides)
    if data is None:  # given data is used as it is; otherwise the experiment's own
        data = load_cifar10()
        if exp.subset is not None:
            data = data.subset(exp.subset, seed=0)
    model = build_model(exp.model, **exp.model_kwargs)
    history = train(model, data, cfg, progress=progress, checkpoint_dir=Path(runs_dir) / name, resume=True)
    history.meta["experiment"] = name
    history.meta["description"] = exp.description
    out = Path(out) if out is not None else RESULTS_DIR / f"{name}.json"
    history.save(out)
    if exp.keep_weights:
        from resnet_lab.train import CHECKPOINT_NAME, export_weights

        export_weights(Path(runs_dir) / name / CHECKPOINT_NAME, out.with_suffix(".pt"))
    return history
