"""The speed run's fast-training techniques: alternating flips, progressive resizing, a higher
learning rate on BN biases, an EMA of the weights; and their experiments."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from resnet_lab.checkpoints import CHECKPOINT_NAME
from resnet_lab.config import TrainConfig, low_res_epochs
from resnet_lab.lab.experiments import EXPERIMENTS, experiment_names
from resnet_lab.lab.results import config_differences
from resnet_lab.loader import CifarLoader, normalize
from resnet_lab.models import cifar_resnet
from resnet_lab.optim import parameter_groups
from resnet_lab.train import EMA_BN_BATCHES, train

CFG = TrainConfig(
    epochs=3,
    batch_size=50,
    lr=0.05,
    device="cpu",
    precision="fp32",
    channels_last=False,
    eval_every=1,
)


def small_model():
    torch.manual_seed(0)
    return cifar_resnet(8, width=8)


def _views_by_image(loader, n, epoch):
    """{image index: the view the loader yielded} for ``epoch`` (labels carry the index)."""
    loader.set_epoch(epoch)
    views = {}
    for x, idx in loader:
        for v, i in zip(x, idx.tolist()):
            views[i] = v
    assert len(views) == n
    return views


def test_alternating_flips_mirror_each_image_every_other_epoch():
    n = 64
    images = torch.randint(
        0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    loader = CifarLoader(
        images, torch.arange(n), 16, device="cpu", seed=3, crop_pad=0, flip="alternate"
    )
    plain = normalize(images)
    epochs = [_views_by_image(loader, n, epoch) for epoch in range(3)]
    flipped = [
        torch.tensor([torch.equal(e[i], plain[i].flip(2)) for i in range(n)]) for e in epochs
    ]
    unflipped = [torch.tensor([torch.equal(e[i], plain[i]) for i in range(n)]) for e in epochs]
    for f, u in zip(flipped, unflipped):
        assert (f ^ u).all(), "every view is the image or its mirror image"
    assert 16 < int(flipped[0].sum()) < 48, "the first epoch mirrors about half the images"
    assert torch.equal(flipped[1], ~flipped[0]) and torch.equal(flipped[2], flipped[0])
    # random flips, by contrast, mirror an image twice in a row about a quarter of the time
    rand = CifarLoader(images, torch.arange(n), 16, device="cpu", seed=3, crop_pad=0, flip=True)
    r = [
        torch.tensor(
            [
                torch.equal(v, plain[i].flip(2))
                for i, v in sorted(_views_by_image(rand, n, e).items())
            ]
        )
        for e in range(2)
    ]
    assert (r[0] & r[1]).any()


def test_flip_setting_is_checked():
    with pytest.raises(ValueError, match="flip must be"):
        CifarLoader(
            torch.zeros(4, 3, 32, 32, dtype=torch.uint8),
            torch.zeros(4),
            2,
            device="cpu",
            flip="sometimes",
        )
    with pytest.raises(ValueError, match="TrainConfig.flip must be true, false or 'alternate'"):
        TrainConfig(flip="sometimes")


def test_progressive_resizing_trains_the_first_epochs_small(tiny_data):
    model = small_model()
    sizes = []
    model.register_forward_pre_hook(lambda m, inp: sizes.append((m.training, inp[0].shape[-1])))
    cfg = replace(CFG, epochs=4, low_res=16, low_res_fraction=0.5)
    h = train(model, tiny_data, cfg, progress=False)
    train_sizes = [s for training, s in sizes if training]
    steps = len(tiny_data.train_labels) // cfg.batch_size
    assert low_res_epochs(cfg) == 2 and low_res_epochs(replace(cfg, low_res=0)) == 0
    assert train_sizes == [16] * (2 * steps) + [32] * (2 * steps)
    assert {s for training, s in sizes if not training} == {32}, "evaluation is always at full size"
    assert len(h) == 4


def test_bn_biases_get_a_higher_learning_rate_and_lower_decay():
    model = small_model()
    cfg = TrainConfig(lr=0.1, weight_decay=5e-4, bn_bias_lr=8.0)
    groups = parameter_groups(model, cfg)
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(groups) == 2
    for g in groups:
        ids = {id(p) for p in g["params"]}
        if ids <= bn_biases:
            assert (
                ids == bn_biases
                and g["lr"] == pytest.approx(0.8)
                and g["weight_decay"] == pytest.approx(5e-4 / 8)
            )
        else:
            assert (
                not ids & bn_biases and g["lr"] == pytest.approx(0.1) and g["weight_decay"] == 5e-4
            )
    # together with per-part scales: the head at 1x, BN biases of the backbone at 0.1 x 8
    both = parameter_groups(model, replace(cfg, lr_scales={"backbone": 0.1}))
    assert sorted(round(g["lr"], 6) for g in both) == [0.01, 0.08, 0.1]
    assert len(parameter_groups(model, TrainConfig())) == 1, "off: one group, as before"


def test_bn_weight_decay_off_decays_no_bn_parameter():
    model = small_model()
    bn_params = {
        id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    }
    groups = parameter_groups(model, TrainConfig(weight_decay=5e-4, bn_weight_decay=False))
    assert len(groups) == 2
    for g in groups:
        ids = {id(p) for p in g["params"]}
        assert g["weight_decay"] == (0.0 if ids == bn_params else 5e-4), (
            "BN params alone are undecayed"
        )
        assert ids == bn_params or not ids & bn_params
    # with BN biases at a higher rate: three groups, every BN parameter still undecayed
    three = parameter_groups(
        model, TrainConfig(weight_decay=5e-4, bn_weight_decay=False, bn_bias_lr=4.0)
    )
    assert sorted(g["weight_decay"] for g in three) == [0.0, 0.0, 5e-4]


def test_ema_is_what_gets_evaluated_and_resumes(tiny_data, tmp_path):
    cfg = replace(CFG, ema=0.9)
    full_model = small_model()
    full = train(full_model, tiny_data, cfg, progress=False, checkpoint_dir=tmp_path / "full")
    last = full.epochs[-1]
    assert "test_acc_raw" in last and "test_acc_raw" not in full.epochs[0]
    state = torch.load(tmp_path / "full" / CHECKPOINT_NAME, weights_only=True)
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert int(state["ema"]["n_averaged"]) == 3 * len(tiny_data.train_labels) // cfg.batch_size
    raw = full_model.state_dict()
    assert not torch.equal(ema["fc.weight"], raw["fc.weight"]), (
        "the average is not the last weights"
    )

    # interrupted by Ctrl-C in epoch 2 and resumed: the same average as the uninterrupted run
    part, model, calls = tmp_path / "part", small_model(), []

    def interrupt(module, _inp):
        calls.append(module.training)
        if sum(calls) == 6:  # 4 steps per epoch: the 2nd step of epoch 2
            raise KeyboardInterrupt

    handle = model.register_forward_pre_hook(interrupt)
    assert len(train(model, tiny_data, cfg, progress=False, checkpoint_dir=part)) == 1
    handle.remove()
    resumed = train(small_model(), tiny_data, cfg, progress=False, checkpoint_dir=part, resume=True)
    state2 = torch.load(part / CHECKPOINT_NAME, weights_only=True)
    for k, v in state["ema"].items():
        assert torch.equal(v, state2["ema"][k]), f"EMA {k} differs after resume"
    assert resumed.epochs[-1]["test_acc"] == last["test_acc"]


def test_ema_of_decay_near_zero_holds_the_last_weights(tiny_data, tmp_path):
    model = small_model()
    train(model, tiny_data, replace(CFG, ema=1e-12), progress=False, checkpoint_dir=tmp_path)
    ema = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["ema"]
    for k, v in model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(ema[f"module.{k}"], v)


def test_the_average_gets_bn_statistics_of_its_own_before_each_test(tiny_data, tmp_path):
    """Statistics averaged along with the weights do not fit the averaged weights: the average
    gets its own, refit on training images."""
    model = small_model()
    train(model, tiny_data, replace(CFG, ema=0.9), progress=False, checkpoint_dir=tmp_path)
    ema = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["ema"]
    steps = CFG.epochs * (len(tiny_data.train_labels) // CFG.batch_size)
    assert model.bn1.num_batches_tracked == steps, "the raw model's statistics follow training"
    refit = min(EMA_BN_BATCHES, -(-len(tiny_data.train_labels) // 500))
    assert ema["module.bn1.num_batches_tracked"] == refit, "the average's come from the refit"
    assert not torch.equal(ema["module.bn1.running_mean"], model.bn1.running_mean)


def test_resume_accepts_a_checkpoint_from_before_the_new_settings(tiny_data, tmp_path):
    cfg = replace(CFG, epochs=1, schedule="constant")  # a constant schedule may be extended
    train(small_model(), tiny_data, cfg, progress=False, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    state = torch.load(path, weights_only=True)
    for k in ("ema", "bn_bias_lr", "bn_weight_decay", "low_res", "low_res_fraction"):
        state["config"].pop(k)
    state.pop("ema")
    torch.save(state, path)
    h = train(
        small_model(),
        tiny_data,
        replace(cfg, epochs=2),
        progress=False,
        checkpoint_dir=tmp_path,
        resume=True,
    )
    assert h["epoch"] == [1, 2]


@pytest.mark.parametrize(
    "field, bad",
    [
        ("ema", 1.0),
        ("ema", -0.1),
        ("bn_bias_lr", 0),
        ("low_res", 6),
        ("low_res", 40),
        ("low_res_fraction", 0),
    ],
)
def test_technique_settings_are_checked(field, bad):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be"):
        TrainConfig(**{field: bad})


def test_speedrun_sweep_changes_one_thing_at_a_time():
    """One field each, where a changed batch size brings its learning rate along (the same lr
    per image); label smoothing together with batch size is the one joint setting."""
    base = EXPERIMENTS["speedrun/baseline"]
    assert config_differences(base.config, EXPERIMENTS["cpu_speedrun"].config, ignore=()) == []
    singles, combined = set(), {}
    for name in experiment_names("speedrun"):
        exp = EXPERIMENTS[name]
        assert exp.model == base.model and exp.model_kwargs == base.model_kwargs
        changed = {f for f, _, _ in config_differences(base.config, exp.config, ignore=())}
        if "batch_size" in changed:
            assert exp.config.lr / exp.config.batch_size == pytest.approx(
                base.config.lr / base.config.batch_size
            )
            changed -= {"lr"}
        if name == "speedrun/baseline":
            assert not changed
        elif name.startswith("speedrun/all"):
            combined[name] = changed
        else:
            assert len(changed) == 1 or changed == {"batch_size", "label_smoothing"}, (
                name,
                changed,
            )
            singles |= changed
    for name, changed in combined.items():  # "all": techniques measured alone, for more epochs
        assert changed - {"epochs"} <= singles, (name, changed - singles)
