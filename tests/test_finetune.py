import json
import warnings
from dataclasses import replace

import pytest
import torch

from resnet_lab.book.imagenet import (
    ImageNetRun,
    PretrainedNotLoaded,
    imagenet_report,
    imagenet_transfer,
    load_imagenet_weights,
    prediction_grid,
    stage_inputs,
    use_weights_transforms,
)
from resnet_lab.checkpoints import CheckpointMismatch, load_checkpoint, model_name, model_signature
from resnet_lab.config import TrainConfig, lr_factor
from resnet_lab.distributed import Ranks
from resnet_lab.evaluation import predict
from resnet_lab.finetune import (
    count_trainable,
    freeze,
    load_pretrained,
    replace_head,
    trainable_parts,
    unfreeze,
)
from resnet_lab.lab import transfer
from resnet_lab.lab.names import build_model
from resnet_lab.lab.probe import choose_probe, fit_linear_head, fold_ids, pooled_features
from resnet_lab.lab.transfer import (
    PROTOCOL,
    TRANSFER,
    load_transfer,
    run_transfer_study,
    transfer_status,
    transfer_summary,
)
from resnet_lab.loader import CifarLoader, normalize
from resnet_lab.models import cifar_resnet, count_params, resnet18, resnet50
from resnet_lab.optim import make_optimizer
from resnet_lab.run import build_run
from resnet_lab.train import train

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
    with pytest.warns(PretrainedNotLoaded, match="not loaded"):
        result = load_imagenet_weights(model, "IMAGENET1K_V1")
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
    result = load_imagenet_weights(ours, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    assert result and result.skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(ours.conv1.weight, theirs.conv1.weight)
    with pytest.raises(ValueError, match="'IMAGENET9K' is not a weight set of .*resnet18"):
        load_imagenet_weights(resnet18(), "IMAGENET9K")
    with pytest.raises(ValueError, match="only our ImageNet ResNets"):
        load_imagenet_weights(cifar_resnet(20), "IMAGENET1K_V1")


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
        load_imagenet_weights(resnet18(skip=False), "IMAGENET1K_V1")


def test_offline_default_weights_warn_that_the_model_stays_random(monkeypatch):
    from urllib.error import URLError

    import torchvision

    def offline(self, *a, **k):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.warns(PretrainedNotLoaded) as caught:
        result = load_imagenet_weights(resnet18(num_classes=4))
    assert not result and len(caught) == 1
    line = str(caught[0].message)
    assert line == result.message and "\n" not in line
    assert "ResNet18_Weights.IMAGENET1K_V1 not loaded" in line and "offline, or no network" in line
    assert line.endswith("the model keeps its random weights")
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warn=False: the caller prints the message itself
        assert load_imagenet_weights(resnet18(num_classes=4), warn=False).message == line


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
    hint = "no checkpoint at wieghts: give a checkpoint's path .*load_imagenet_weights"
    for model in (cifar_resnet(8, width=4), resnet50()):
        with pytest.raises(FileNotFoundError, match=hint):  # a typo, or a torchvision weight name
            load_pretrained(model, "wieghts")


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


def _tiny_study(**kw):
    """The transfer study made tiny: resnet8, a few steps, 2 of each grid."""
    tiny = dict(
        source=("airplane", "automobile", "bird", "cat", "deer", "dog"),
        target=("frog", "horse", "ship", "truck"),
        model="resnet8",
        pretrain=replace(CFG, epochs=1, batch_size=20),
        budgets=(2, 4),
        seeds=(0, 1),
        steps=2,
        long_steps=4,
        batch_size=8,
        scratch_lrs=(0.05, 0.1),
        finetune_lrs=(0.02, 0.05),
        probe_l2=(1e-3, 1e-1, 10.0),
    )
    return replace(TRANSFER, **{**tiny, **kw})


def test_transfer_study_records_and_resumes(tiny_data, tmp_path):
    study = _tiny_study()
    out, weights = tmp_path / "transfer.json", tmp_path / "pre.pt"
    records = run_transfer_study(
        study,
        data=tiny_data,
        out=out,
        weights=weights,
        runs_dir=tmp_path / "runs",
        progress=False,
        cpu_shared="tests shared the CPU",
    )
    assert (
        len(records) == 4 * 2 * 2 and weights.is_file() and weights.with_suffix(".json").is_file()
    )
    saved = json.loads(out.read_text())
    assert saved == records
    r = saved[0]
    assert set(r) >= {"method", "labels_per_class", "seed", "test_acc", "meta", "recipe"}
    assert r["protocol"] == PROTOCOL
    assert set(r["meta"]) >= {"hardware", "minutes", "commit", "data", "load_average"}
    assert r["meta"]["cpu_shared"] == "tests shared the CPU"
    probe = next(r for r in saved if r["method"] == "linear_probe")
    assert probe["meta"]["trainable_parameters"] == 64 * 4 + 4
    assert (
        run_transfer_study(study, data=tiny_data, out=out, weights=weights, progress=False)
        == records
    )  # all done
    summary = transfer_summary(records)
    assert summary[("finetune", 2)][2] == 2


def test_each_method_records_the_recipe_it_chose_on_the_labelled_images(tiny_data, tmp_path):
    study = _tiny_study(budgets=(4,), seeds=(0,))
    records = run_transfer_study(
        study,
        data=tiny_data,
        out=tmp_path / "f.json",
        weights=tmp_path / "pre.pt",
        runs_dir=tmp_path / "runs",
        progress=False,
    )
    for r in records:
        sel = r["selection"]
        assert all(0 <= c["val_acc"] <= 1 and c["val_loss"] >= 0 for c in sel["candidates"])
        best = max(sel["candidates"], key=lambda c: (c["val_acc"], -c["val_loss"]))
        if r["method"] == "linear_probe":
            assert sel["by"] == "4-fold cross-validation"  # 4 images per class: 4 folds
            assert [(c["views"], c["l2"]) for c in sel["candidates"]] == [
                (v, l2) for v in study.probe_views for l2 in study.probe_l2
            ]
            assert r["recipe"]["l2"] == best["l2"] and r["recipe"]["views"] == best["views"]
            assert r["recipe"]["converged"]
            assert r["steps"] is None and r["meta"]["config"] is None
            continue
        # each lr at study.steps, then long_steps at the best of them
        grid = [(c["lr"], c["steps"]) for c in sel["candidates"]]
        lrs = study.lrs(r["method"])
        first = [c for c in sel["candidates"] if c["steps"] == study.steps]
        assert grid[:-1] == [(lr, study.steps) for lr in lrs]
        assert grid[-1] == (max(first, key=lambda c: (c["val_acc"], -c["val_loss"]))["lr"], 4)
        assert sel["by"] == "hold-out: 1 fold of 4 (4 images)"
        assert r["recipe"] == {"lr": best["lr"], "steps": best["steps"]}
        assert r["meta"]["config"]["lr"] == best["lr"]  # retrained with the chosen setting
        assert "16 train" in r["meta"]["data"]  # on all the labelled images


def test_one_candidate_trains_nothing_to_choose_it(tiny_data, tmp_path, monkeypatch):
    study = _tiny_study(
        budgets=(2,), seeds=(0,), methods=("finetune",), finetune_lrs=(0.05,), long_steps=None
    )
    calls = []
    for name in ("train", "train_in_folder"):  # the runs, and the pretraining in its folder
        real = getattr(transfer, name)
        monkeypatch.setattr(
            transfer, name, lambda *a, real=real, **k: calls.append(1) or real(*a, **k)
        )
    kw = dict(data=tiny_data, weights=tmp_path / "pre.pt", runs_dir=tmp_path / "runs")
    (r,) = run_transfer_study(study, out=tmp_path / "f.json", progress=False, **kw)
    assert r["selection"] == {"by": "one candidate", "candidates": []}
    assert r["recipe"] == {"lr": 0.05, "steps": 2} and len(calls) == 2  # pretraining, the run


def test_records_of_the_older_protocol_are_refused_and_skipped(tiny_data, tmp_path):
    out = tmp_path / "transfer.json"
    old = {"method": "scratch", "labels_per_class": 10, "seed": 0, "test_acc": 0.4}
    out.write_text(json.dumps([old]))
    with pytest.raises(ValueError, match="holds 1 runs made before each method chose its recipe"):
        run_transfer_study(_tiny_study(), data=tiny_data, out=out, progress=False)
    assert not transfer_status(_tiny_study(), out)[0][3]  # not counted as done
    notes = []
    assert load_transfer(tmp_path, notes=notes) == ([], None)
    assert notes == [f"skipped 1 runs of {out}: " + transfer._OLD]


def test_study_config_refuses_the_probe_and_takes_the_steps_asked():
    with pytest.raises(ValueError, match="the linear probe is fit by L-BFGS"):
        TRANSFER.config("linear_probe", 40, 0, 0.1, 250)
    for n in (40, 160, 200, 1000):
        cfg = TRANSFER.config("finetune_lowlr", n, 0, 0.05, 250)
        steps = cfg.epochs * (n // cfg.batch_size)
        assert abs(steps - 250) <= n // cfg.batch_size / 2  # the nearest whole epoch
        assert cfg.lr == 0.05 and cfg.lr_scales == {"backbone": 0.1}


# ---------------------------------------------------------------------------- the probe


def _blobs(n_per_class=30, d=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(k, d, generator=g)
    y = torch.arange(k).repeat_interleave(n_per_class)
    x = centres[y] + torch.randn(len(y), d, generator=g) * torch.linspace(0.5, 4, d)
    return x + 10, y  # far from zero: the standardisation matters


def test_linear_head_is_the_regularised_optimum():
    x, y = _blobs()
    fit = fit_linear_head(x, y, 3, 1e-2)
    assert fit.converged and fit.grad_max <= 1e-6 and fit.iterations > 1
    # the objective it minimises, written out here on the standardised features
    mean, sd = x.double().mean(0), x.double().std(0)
    z = (x.double() - mean) / sd

    def objective(w, b):
        return torch.nn.functional.cross_entropy(z @ w.T + b, y) + 1e-2 * (w * w).sum()

    w = (fit.weight.double() * sd).requires_grad_()  # back to the standardised features
    b = (fit.bias.double() + fit.weight.double() @ mean).requires_grad_()
    objective(w, b).backward()
    assert w.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4  # stationary: the optimum
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        dw = 1e-2 * torch.randn(w.shape, generator=g, dtype=torch.float64)
        assert objective(w + dw, b) > objective(w, b)
    strong = fit_linear_head(x, y, 3, 1.0)
    assert strong.weight.norm() < fit.weight.norm()


def test_folds_are_class_balanced_and_need_two_images_per_class():
    y = torch.tensor([0] * 7 + [1] * 5 + [2] * 10)
    ids = fold_ids(y, 5, seed=3)
    for c in range(3):
        counts = torch.bincount(ids[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert torch.equal(ids, fold_ids(y, 5, seed=3)) and not torch.equal(ids, fold_ids(y, 5, 4))
    assert int(fold_ids(torch.tensor([0, 0, 1, 1, 1]), 5, 0).max()) == 1  # 2 images: 2 folds
    with pytest.raises(ValueError, match="at least 2 labelled images per class"):
        fold_ids(torch.tensor([0, 0, 1]), 5, 0)


def test_cross_validation_scores_every_candidate_and_picks_the_best():
    x, y = _blobs(n_per_class=10, d=30)
    views = torch.stack([x, x + 0.1 * torch.randn(x.shape)])
    recipe, sel = choose_probe(views, y, 3, (1e-5, 1e-2, 1e3), (1, 2), folds=5, seed=0)
    scores = {(c["views"], c["l2"]): c for c in sel["candidates"]}
    assert len(scores) == 6 and sel["by"] == "5-fold cross-validation"
    best = max(scores.values(), key=lambda c: (c["val_acc"], -c["val_loss"]))
    assert recipe == {"views": best["views"], "l2": best["l2"]}
    assert scores[(1, 1e3)]["val_loss"] > best["val_loss"]  # all but no weights: worse


def test_all_views_of_an_image_stay_in_its_fold():
    # noise features, random labels: nothing to learn, but a weakly regularised fit memorises
    # its training images; a held-out image whose copy it was fit on would be scored right
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 100, generator=g)
    y = torch.arange(4).repeat(10)
    _, sel = choose_probe(torch.stack([x, x]), y, 4, (1e-5,), (1, 2), folds=5, seed=0)
    assert all(c["val_acc"] < 0.6 for c in sel["candidates"])  # near chance (0.25), not 1


def test_pooled_features_are_what_the_head_sees():
    torch.manual_seed(0)
    net = cifar_resnet(8, width=4).eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    feats = pooled_features(net, images, batch_size=4)
    assert feats.shape == (6, 16)
    with torch.no_grad():
        logits = net(normalize(images))
    assert torch.allclose(net.fc(feats), logits, atol=1e-5)


# ---------------------------------------------------------------------------- ImageNet weights


def test_the_hook_applies_the_weights_own_transforms():
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1  # its transforms need no download
    net = resnet18(num_classes=4)
    handle = use_weights_transforms(net, weights)
    seen = []
    net.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        net(normalize(images))
    expected = weights.transforms(antialias=True)(images.float() / 255)
    assert seen[0].shape == (2, 3, 224, 224)
    assert torch.allclose(seen[0], expected, atol=1e-5)
    handle.remove()
    with torch.no_grad():
        net(normalize(images))
    assert seen[1].shape == (2, 3, 32, 32)


def _offline(self, *a, **k):
    from urllib.error import URLError

    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_imagenet_transfer_offline_trains_nothing_and_says_why(tiny_data, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", _offline)
    run = imagenet_transfer(tiny_data.select_classes(["ship", "truck"]), labels_per_class=2)
    assert not run.pretrained and run.model is None and run.history is None
    assert "not loaded" in run.pretrained.message and "offline" in run.pretrained.message


def test_imagenet_transfer_online_fine_tunes_through_the_transforms(tiny_data, monkeypatch):
    import torchvision

    theirs = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(
        torchvision.models.WeightsEnum, "get_state_dict", lambda self, *a, **k: theirs
    )
    data = tiny_data.select_classes(["ship", "truck"])
    run = imagenet_transfer(data, labels_per_class=2, steps=1, test_images=4)
    assert run.pretrained and len(run.data.train_labels) == 4 and len(run.data.test_labels) == 4
    assert run.history.meta["config"]["lr_scales"] == {"backbone": 0.1}
    assert 0 <= run.history.final["test_acc"] <= 1
    seen = []
    run.model.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    loader = CifarLoader(run.data.test_images, run.data.test_labels, 4, train=False, device="cpu")
    assert predict(run.model, loader).shape == (4, 2) and seen == [224]


def test_stage_inputs_are_what_each_part_receives_and_the_hooks_go():
    from torchvision.models import ResNet18_Weights

    x = torch.randn(2, 3, 32, 32)
    net = resnet18(num_classes=4)
    bare = stage_inputs(net, x)
    assert bare["conv1"].shape == (2, 3, 32, 32) and bare["layer1"].shape == (2, 64, 8, 8)
    assert torch.equal(bare["conv1"], x)
    assert not net.conv1._forward_pre_hooks and not net.layer1._forward_pre_hooks
    use_weights_transforms(net, ResNet18_Weights.IMAGENET1K_V1)
    seen = stage_inputs(net, x, names=("layer1", "layer2"))
    assert list(seen) == ["layer1", "layer2"] and seen["layer1"].shape[-1] == 56


def test_imagenet_report_says_what_ran_or_why_not(tiny_data, monkeypatch):
    import torchvision

    def no_network(self, *args, **kwargs):
        raise OSError("no network (the test's own)")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", no_network)
    offline = imagenet_transfer(tiny_data.select_classes(["ship", "truck"]), labels_per_class=2)
    assert not offline.pretrained and offline.model is None
    skipped = imagenet_report(None, offline.pretrained, 5)
    assert max(map(len, skipped.splitlines())) <= 77  # wrapped to the page
    assert " ".join(skipped.split()).startswith(
        " ".join(f"skipped here: {offline.pretrained.message}. No ImageNet network".split())
    )
    theirs = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(
        torchvision.models.WeightsEnum, "get_state_dict", lambda self, *a, **k: theirs
    )
    data = tiny_data.select_classes(["ship", "truck"])
    run = imagenet_transfer(data, labels_per_class=2, steps=1, test_images=4)
    report = imagenet_report(run, offline.pretrained, 1)
    assert max(map(len, report.splitlines())) <= 77
    line = " ".join(report.split())
    assert line.startswith(f"ran here: {run.pretrained.message}; fine-tuned on 4 labelled")
    assert line.endswith(
        f"{100 * run.history.final['test_acc']:.1f}% test accuracy on 4 test images of its"
        " 2 classes"
    )
    images, predicted, labels = prediction_grid(run, per_class=1)
    assert labels.tolist() == [0, 1] and images.shape == (2, 3, 32, 32)
    assert predicted.shape == (2,) and set(predicted.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="no fine-tuned network"):
        prediction_grid(ImageNetRun(offline.pretrained))


def test_prediction_grid_marks_the_mistakes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resnet_lab.book.mistakes import show_predictions

    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    fig = show_predictions(
        images, torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), ["ship", "truck"], source="t"
    )
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["ship", "truck", "truck\n(ship)"]
    colors = [ax.title.get_color() for ax in fig.axes[:3]]
    assert colors[0] == colors[1] != colors[2]
    plt.close(fig)
