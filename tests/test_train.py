import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.checkpoints import CheckpointMismatch, History, load_checkpoint
from resnet_lab.cifar10 import MEAN, STD
from resnet_lab.config import TrainConfig, lr_factor
from resnet_lab.device import autocast_context, bf16_supported, resolve_precision
from resnet_lab.evaluation import evaluate
from resnet_lab.loader import CifarLoader
from resnet_lab.models import cifar_resnet
from resnet_lab.train import train

CFG = TrainConfig(epochs=3, batch_size=50, lr=0.05, device="cpu", seed=0)


def small_model():
    torch.manual_seed(0)
    return cifar_resnet(8, width=4)


def test_train_returns_history_and_learns(tiny_data):
    h = train(small_model(), tiny_data, replace(CFG, epochs=4), progress=False)
    assert len(h) == 4 and h["epoch"] == [1, 2, 3, 4]
    for r in h.epochs:
        assert set(r) >= {
            "epoch",
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "lr",
            "seconds",
            "images_per_sec",
        }
        assert r["images_per_sec"] > 0
    assert h["train_loss"][-1] < h["train_loss"][0]
    meta = h.meta
    assert meta["model"] == "resnet8 (width 4)" and meta["device"] == "cpu"
    assert meta["config"]["epochs"] == 4 and "synthetic" in meta["data"] and meta["torch"]


def test_history_round_trip(tiny_data, tmp_path):
    h = train(small_model(), tiny_data, replace(CFG, epochs=1), progress=False)
    h.save(tmp_path / "h.json")
    blob = json.loads((tmp_path / "h.json").read_text())
    assert set(blob) == {"meta", "epochs"}
    h2 = History.load(tmp_path / "h.json")
    assert h2.epochs == h.epochs and h2.meta == h.meta
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a History JSON"):
        History.load(tmp_path / "bad.json")


def test_schedules():
    cfg = TrainConfig(epochs=4, schedule="paper")
    f = [lr_factor(cfg, s, 400, 100) for s in (0, 199, 200, 299, 300, 399)]
    assert f == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    one = replace(cfg, schedule="onecycle", warmup=1)
    assert lr_factor(one, 0, 400, 100) == pytest.approx(0.01)
    assert lr_factor(one, 99, 400, 100) == pytest.approx(1.0)
    assert lr_factor(one, 399, 400, 100) == pytest.approx(1 / 300)
    assert lr_factor(replace(cfg, warmup=1), 50, 400, 100) == 0.1
    with pytest.raises(ValueError, match="schedule must be"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="precision must be"):
        TrainConfig(precision="int8")


def test_checkpoint_resume_equals_uninterrupted(tiny_data, tmp_path):
    full = small_model()
    train(full, tiny_data, CFG, progress=False)

    # interrupt during epoch 2 by Ctrl-C (KeyboardInterrupt from inside the forward pass)
    model = small_model()
    calls = {"n": 0}

    def interrupt(_module, _inp):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 steps per epoch + 1 evaluation batch: the 2nd step of epoch 2
            raise KeyboardInterrupt

    handle = model.register_forward_pre_hook(interrupt)
    partial = train(model, tiny_data, CFG, progress=False, checkpoint_dir=tmp_path)
    handle.remove()
    assert len(partial) == 1 and partial.meta["interrupted_after_epoch"] == 1
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "history.json").exists()
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"

    resumed_model = small_model()
    resumed = train(
        resumed_model, tiny_data, CFG, progress=False, checkpoint_dir=tmp_path, resume=True
    )
    assert resumed["epoch"] == [1, 2, 3]
    assert resumed.meta["resumed_at_epochs"] == [1]
    for (k, a), b in zip(full.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), f"{k} differs after resume"


def test_resume_with_other_settings_is_refused(tiny_data, tmp_path):
    train(small_model(), tiny_data, replace(CFG, epochs=1), progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatch, match="other settings .*lr"):
        train(
            small_model(),
            tiny_data,
            replace(CFG, lr=0.2),
            progress=False,
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_checkpoint_of_another_model_is_refused(tiny_data, tmp_path):
    train(small_model(), tiny_data, replace(CFG, epochs=1), progress=False, checkpoint_dir=tmp_path)
    other = cifar_resnet(14, width=4)
    with pytest.raises(
        CheckpointMismatch, match="holds a resnet8 \\(width 4\\) but the model is a resnet14"
    ):
        load_checkpoint(tmp_path / "checkpoint.pt", other)
    state = load_checkpoint(tmp_path / "checkpoint.pt", small_model())
    assert state["epoch"] == 1
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


class _NaNAfter(nn.Module):
    def __init__(self, inner, step):
        super().__init__()
        self.inner, self.step, self.calls = inner, step, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.calls == self.step else out


def test_nan_loss_stops_with_epoch_and_step(tiny_data):
    with pytest.raises(FloatingPointError, match="epoch 1, step 3"):
        train(_NaNAfter(small_model(), 3), tiny_data, CFG, progress=False)


def test_evaluate_and_flip_tta(tiny_data):
    model = small_model()
    loader = CifarLoader(
        tiny_data.test_images, tiny_data.test_labels, 30, train=False, device="cpu"
    )
    loss, acc = evaluate(model, loader)
    assert 0 <= acc <= 1 and loss > 0
    assert model.training  # evaluate restores the mode
    # TTA is the mean of the logits of each image and its mirror image: computed by hand, on a
    # linear model whose logits are large and far from mirror-symmetric
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    nn.init.normal_(linear[1].weight, std=0.05)
    with torch.no_grad():
        x = loader.images.float()  # no crops or flips in a test loader: only normalised
        x = (x / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        plain = linear(x)
        mirrored = 0.5 * (plain + linear(x.flip(3)))
    y = loader.labels
    loss_plain, _ = evaluate(linear, loader)
    loss_tta, acc_tta = evaluate(linear, loader, tta=True)
    assert loss_plain == pytest.approx(F.cross_entropy(plain, y).item(), rel=1e-5)
    assert loss_tta == pytest.approx(F.cross_entropy(mirrored, y).item(), rel=1e-5)
    assert acc_tta == pytest.approx((mirrored.argmax(1) == y).float().mean().item())
    assert abs(loss_tta - loss_plain) > 0.05 * loss_plain  # the mirror matters for this model


def test_bf16_and_fp16_checks():
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="fp16' needs a CUDA GPU"):
        autocast_context(cpu, "fp16")
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with autocast_context(cpu, "fp32"):
        assert (a @ b).dtype == torch.float32
    if bf16_supported(cpu):  # the arithmetic really is bf16 inside the context
        with autocast_context(cpu, "bf16"):
            assert (a @ b).dtype == torch.bfloat16
        assert resolve_precision(cpu, "auto") == "bf16"
    else:
        with pytest.raises(ValueError, match="does not support bf16 well"):
            autocast_context(cpu, "bf16")
        assert resolve_precision(cpu, "auto") == "fp32"


def test_batch_larger_than_data(tiny_data):
    with pytest.raises(ValueError, match="larger than the training set"):
        train(small_model(), tiny_data, replace(CFG, batch_size=1000), progress=False)


def test_ctrl_c_during_a_checkpoint_write_names_the_epoch_resume_starts_from(
    tiny_data, tmp_path, capsys, interrupt_checkpoint_write
):
    """The message used to say 'continues from epoch 3' when the checkpoint held only epoch 1."""
    interrupt_checkpoint_write(2)
    h = train(small_model(), tiny_data, CFG, progress=False, checkpoint_dir=tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert len(h) == 2 and "continues from epoch 2." in capsys.readouterr().out


def test_a_checkpoint_from_before_the_data_digest_still_resumes(tiny_data, tmp_path):
    cfg = replace(CFG, epochs=2)
    train(small_model(), tiny_data, replace(cfg, epochs=2), progress=False, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    assert "; digest " in state["data"]
    old = (
        state["data"].rsplit("; digest ", 1)[0] + ")"
    )  # the description as resnet_lab wrote it before
    state["data"] = state["history"]["meta"]["data"] = old
    state["epoch"] = 1
    state["history"]["epochs"] = state["history"]["epochs"][:1]
    torch.save(state, path)
    h = train(small_model(), tiny_data, cfg, progress=False, checkpoint_dir=tmp_path, resume=True)
    assert h["epoch"] == [1, 2]
    other = tiny_data.subset(100)  # and other data is still refused
    with pytest.raises(CheckpointMismatch, match="other data"):
        train(
            small_model(),
            other,
            replace(cfg, epochs=2),
            progress=False,
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_a_resume_removes_what_a_writer_killed_mid_write_left(tiny_data, tmp_path):
    """A SIGKILL during a checkpoint write left .checkpoint.pt.tmp-<pid> for good."""
    import subprocess
    import sys

    cfg = replace(CFG, epochs=2, schedule="constant")  # resumable for a longer run
    train(small_model(), tiny_data, replace(cfg, epochs=1), progress=False, checkpoint_dir=tmp_path)
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    left = tmp_path / f".checkpoint.pt.tmp-{killed.pid}"
    left.write_bytes(b"half a checkpoint")
    h = train(small_model(), tiny_data, cfg, progress=False, checkpoint_dir=tmp_path, resume=True)
    assert h["epoch"] == [1, 2] and not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "history.json"]
