import json
import warnings
from dataclasses import replace

import pytest
import torch

from resnet_lab.checkpoints import CheckpointMismatch, load_checkpoint, model_name, model_signature
from resnet_lab.config import TrainConfig, lr_factor
from resnet_lab.distributed import Ranks
from resnet_lab.finetune import (
    count_trainable,
    freeze,
    load_pretrained,
    replace_head,
    trainable_parts,
    unfreeze,
)
from resnet_lab.models import build_model, cifar_resnet, count_params, resnet18, resnet50
from resnet_lab.optim import make_optimizer
from resnet_lab.run import build_run
from resnet_lab.train import train
from resnet_lab.transfer import (
    TRANSFER,
    run_transfer_study,
    transfer_summary,
)

CFG = TrainConfig(
    epochs=1, batch_size=50, lr=0.1, device="cpu", precision="fp32", channels_last=False
)


@pytest.mark.parametrize(
    "make, size",
    [
        (lambda: cifar_resnet(8), 32),
        (lambda: cifar_resnet(8, skip=False), 32),
        (lambda: cifar_resnet(11, block="bottleneck"), 32),
        (lambda: resnet18(), 64),
        (lambda: resnet50(), 64),
    ],
)
def test_replace_head_for_every_family(make, size):
    model = make()
    replace_head(model, 7)
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 7)
    assert model.build_spec["kwargs"]["num_classes"] == 7
    rebuilt = build_model(model.build_spec["name"], **model.build_spec["kwargs"])
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        replace_head(model, 0)


def test_freeze_counts_and_parts():
    model = cifar_resnet(8)
    total = count_params(model)
    freeze(model, "backbone")
    assert count_trainable(model) == (count_params(model.fc), total - count_params(model.fc))
    assert trainable_parts(model) == {
        "stem": False,
        "layer1": False,
        "layer2": False,
        "layer3": False,
        "head": True,
    }
    unfreeze(model, ["layer3"])
    assert trainable_parts(model)["layer3"] and not trainable_parts(model)["layer2"]
    with pytest.raises(ValueError, match="unknown part 'layer4'.*'stem'"):
        freeze(model, "layer4")


def test_frozen_parameters_and_bn_statistics_do_not_change(tiny_data):
    torch.manual_seed(0)
    model = cifar_resnet(8, width=4)
    freeze(model, ["stem", "layer1", "layer2"])
    frozen = {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.split(".")[0] in ("conv1", "bn1", "layer1", "layer2")
    }
    trained = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("layer3")}
    train(model, tiny_data, CFG, progress=False)
    after = model.state_dict()
    assert all(
        torch.equal(v, after[k]) for k, v in frozen.items()
    )  # weights, running stats, counters
    assert any(not torch.equal(v, after[k]) for k, v in trained.items())  # the rest did train


def test_parameter_group_learning_rates():
    model = cifar_resnet(8)
    opt = make_optimizer(model, TrainConfig(lr=0.2, lr_scales={"backbone": 0.1, "layer3": 0.5}))
    by_lr = {round(g["lr"], 6): sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    head, l3 = count_params(model.fc), count_params(model.layer3)
    assert by_lr == {0.2: head, 0.1: l3, 0.02: count_params(model) - head - l3}
    freeze(model, "backbone")
    assert [
        sum(p.numel() for p in g["params"])
        for g in make_optimizer(model, TrainConfig()).param_groups
    ] == [head]
    with pytest.raises(ValueError, match="unknown parts \\['trunk'\\]"):
        make_optimizer(model, TrainConfig(lr_scales={"trunk": 0.1}))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler")  # stepped alone here
def test_lr_scales_keep_their_ratio_through_the_schedule(tiny_data):
    """At every step the head trains at the schedule's rate and the backbone at a tenth of it;
    the record's "lr" is the head's (the base rate of the next step), not the backbone's."""
    cfg = replace(CFG, epochs=2, schedule="onecycle", warmup=1, lr_scales={"backbone": 0.1})
    run = build_run(cifar_resnet(8, width=4), tiny_data, cfg, Ranks(), None)
    steps = len(run.train_loader)
    total = cfg.epochs * steps
    groups = {g["lr_scale"]: g for g in run.optimizer.param_groups}
    assert sorted(groups) == [0.1, 1.0]
    for step in range(total):
        head = cfg.lr * lr_factor(cfg, step, total, steps)
        assert groups[1.0]["lr"] == pytest.approx(head)
        assert groups[0.1]["lr"] == pytest.approx(0.1 * head)
        run.scheduler.step()
    h = train(cifar_resnet(8, width=4), tiny_data, cfg, progress=False)
    expected = [cfg.lr * lr_factor(cfg, e * steps, total, steps) for e in (1, 2)]
    assert [r["lr"] for r in h.epochs] == pytest.approx(expected)
    assert expected[0] > 0  # a rate the backbone's group (a tenth) cannot be mistaken for


def test_checkpoint_loads_into_a_model_with_a_new_head(tiny_data, tmp_path):
    source = cifar_resnet(8, width=4)
    train(source, tiny_data, CFG, progress=False, checkpoint_dir=tmp_path)
    target = replace_head(cifar_resnet(8, width=4), 3)
    result = load_pretrained(target, tmp_path / "checkpoint.pt")
    assert (
        result
        and result.skipped == ["fc.weight", "fc.bias"]
        and "all weights but the head" in result.message
    )
    for k, v in source.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(target.state_dict()[k], v)
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(cifar_resnet(14, width=4), tmp_path / "checkpoint.pt")


def test_torchvision_weights_offline_give_a_message_not_an_error(monkeypatch, capsys):
    from urllib.error import URLError

    import torchvision

    def offline(self, *a, **k):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    model = resnet18(num_classes=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="not loaded"):
        result = load_pretrained(model, "IMAGENET1K_V1")
    assert not result and "not loaded" in result.message and "random weights" in result.message
    assert "\n" not in result.message
    assert all(
        torch.equal(before[k], v) for k, v in model.state_dict().items()
    )  # nothing passed off


def test_torchvision_weights_load_into_ours(monkeypatch):
    import torchvision

    theirs = torchvision.models.resnet18(weights=None)
    monkeypatch.setattr(
        torchvision.models.WeightsEnum, "get_state_dict", lambda self, *a, **k: theirs.state_dict()
    )
    ours = resnet18(num_classes=4)
    result = load_pretrained(ours, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    assert result and result.skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(ours.conv1.weight, theirs.conv1.weight)
    with pytest.raises(ValueError, match="neither an existing file nor a weight set of .*resnet18"):
        load_pretrained(resnet18(), "IMAGENET9K")
    with pytest.raises(ValueError, match="only our ImageNet ResNets"):
        load_pretrained(cifar_resnet(20), "IMAGENET1K_V1")


def _weights_file(model, path):
    """Exported weights of ``model`` at ``path``, as export_weights writes them."""
    torch.save(
        {
            "format": "resnet_lab.weights/1",
            "model_name": model_name(model),
            "build": model.build_spec,
            "signature": model_signature(model),
            "model": model.state_dict(),
            "epoch": 1,
        },
        path,
    )
    return path


def test_pretrained_resnet_is_refused_by_its_plain_twin(tmp_path, monkeypatch):
    import torchvision

    path = _weights_file(cifar_resnet(8, width=4), tmp_path / "resnet8.pt")
    both = r"holds a resnet8 \(width 4\) but the model is a plain8 \(width 4\).*build a resnet8"
    for load in (load_pretrained, lambda m, p: load_checkpoint(p, m)):  # refused the same way
        with pytest.raises(CheckpointMismatch, match=both):
            load(cifar_resnet(8, width=4, skip=False), path)
    # a new head or another initialisation is the same network
    assert load_pretrained(cifar_resnet(8, width=4, num_classes=3, zero_init_residual=True), path)
    theirs = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda *a, **k: theirs)
    with pytest.raises(
        CheckpointMismatch, match="resnet18 weights are a ResNet's but .* a plain18"
    ):
        load_pretrained(resnet18(skip=False), "IMAGENET1K_V1")


def test_offline_default_weights_warn_that_the_model_stays_random(monkeypatch):
    from urllib.error import URLError

    import torchvision

    def offline(self, *a, **k):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.warns(UserWarning) as caught:
        result = load_pretrained(resnet18(num_classes=4), "DEFAULT")
    assert not result and len(caught) == 1
    line = str(caught[0].message)
    assert line == result.message and "\n" not in line
    assert "ResNet18_Weights.IMAGENET1K_V1 not loaded" in line and "offline, or no network" in line
    assert line.endswith("the model keeps its random weights")
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warn=False: the caller prints the message itself
        assert load_pretrained(resnet18(num_classes=4), "DEFAULT", warn=False).message == line


def test_a_path_is_a_checkpoint_whatever_its_suffix(tmp_path, monkeypatch):
    source = cifar_resnet(8, width=4)
    for name in ("weights", "resnet8.ckpt"):
        path = _weights_file(source, tmp_path / name)
        for given in (path, str(path)):
            target = cifar_resnet(8, width=4)
            assert load_pretrained(target, given).message == f"loaded all weights from {path}"
            assert torch.equal(target.conv1.weight, source.conv1.weight)
    monkeypatch.chdir(tmp_path)
    assert load_pretrained(cifar_resnet(8, width=4), "weights")  # an existing file, no folder
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at {tmp_path}/missing"):
        load_pretrained(cifar_resnet(8, width=4), f"{tmp_path}/missing")
    neither = "'wieghts' is neither an existing file nor a"
    names = r"\['DEFAULT', 'IMAGENET1K_V1', 'IMAGENET1K_V2'\]"
    with pytest.raises(ValueError, match=f"{neither} torchvision weight name \\({names}"):
        load_pretrained(cifar_resnet(8, width=4), "wieghts")
    names = r"\['IMAGENET1K_V1', 'IMAGENET1K_V2', 'DEFAULT'\]"
    with pytest.raises(
        ValueError, match=f"{neither} weight set of torchvision's resnet50; .*{names}"
    ):
        load_pretrained(resnet50(), "wieghts")


def test_freeze_without_parts_names_the_parts():
    parts = r"\['stem', 'layer1', 'layer2', 'layer3', 'head'\]"
    with pytest.raises(
        TypeError, match=f"parts must be a part name or a list of them, one of {parts}.*got None"
    ):
        freeze(cifar_resnet(8), None)


def test_select_classes_relabels(tiny_data):
    sub = tiny_data.select_classes(["ship", "airplane"])
    assert sub.classes == ("ship", "airplane")
    assert set(sub.train_labels.tolist()) == {0, 1} and len(sub.train_labels) == 40
    # ship (8) -> 0 and airplane (0) -> 1: the marker rows of the synthetic images follow
    assert (sub.train_images[sub.train_labels == 0][:, :, 24:27, :] == 255).all()
    with pytest.raises(ValueError, match="distinct names"):
        tiny_data.select_classes(["ship", "ship"])


def test_transfer_study_records_and_resumes(tiny_data, tmp_path):
    study = replace(
        TRANSFER,
        source=("airplane", "automobile", "bird", "cat", "deer", "dog"),
        target=("frog", "horse", "ship", "truck"),
        model="resnet8",
        pretrain=replace(CFG, epochs=1, batch_size=20),
        budgets=(2, 4),
        seeds=(0, 1),
        steps=2,
        batch_size=8,
    )
    study = replace(study, pretrain=replace(study.pretrain, precision="fp32", channels_last=False))
    out, weights = tmp_path / "finetune.json", tmp_path / "pre.pt"
    records = run_transfer_study(
        study, data=tiny_data, out=out, weights=weights, runs_dir=tmp_path / "runs", progress=False
    )
    assert (
        len(records) == 4 * 2 * 2 and weights.is_file() and weights.with_suffix(".json").is_file()
    )
    saved = json.loads(out.read_text())
    assert saved == records
    r = saved[0]
    assert set(r) >= {"method", "labels_per_class", "seed", "test_acc", "meta"}
    assert set(r["meta"]) >= {"hardware", "minutes", "commit", "data"}
    probe = next(r for r in saved if r["method"] == "linear_probe")
    assert probe["meta"]["trainable_parameters"] == 64 * 4 + 4
    assert (
        run_transfer_study(study, data=tiny_data, out=out, weights=weights, progress=False)
        == records
    )  # all done
    summary = transfer_summary(records)
    assert summary[("finetune", 2)][2] == 2
