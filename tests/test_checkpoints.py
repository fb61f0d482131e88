"""Reading and writing runs when things go wrong: files that are not checkpoints, a full disk,
a History that is not text."""

import copy
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from resnet_lab.checkpoints import (
    History,
    atomic_save,
    load_checkpoint,
    remove_dead_temps,
    save_checkpoint,
)
from resnet_lab.config import TrainConfig
from resnet_lab.models import cifar_resnet
from resnet_lab.train import seed_everything, train

DATA = Path(__file__).parent / "data"


class _Payload:
    """A pickle that runs code when unpickled: it writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _not_a_checkpoint(kind: str, path, marker) -> None:
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "text":
        path.write_text("epoch,loss\n1,2.30\n")
    else:  # a crafted pickle, in the protocol torch.save uses (2) and in Python's default (4)
        with open(path, "wb") as f:
            pickle.dump(_Payload(marker), f, protocol=2 if kind == "pickle p2" else 4)


@pytest.mark.parametrize("kind", ["random bytes", "text", "pickle p2", "pickle p4"])
def test_what_is_not_a_checkpoint_gets_a_short_line_without_unsafe_advice(kind, tmp_path):
    path, marker = tmp_path / "model.pt", tmp_path / "MARKER"
    _not_a_checkpoint(kind, path, marker)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError) as e:
        warnings.simplefilter("always")
        load_checkpoint(path)
    message = str(e.value)
    assert message.startswith(f"{path} is not a readable checkpoint (")
    assert message.endswith("); check the path")  # our reason, not torch's text
    assert "weights_only" not in message and len(message) < 200 and "\n" not in message
    assert not any("weights_only" in str(w.message) for w in caught)  # nor in a warning
    assert not marker.exists()  # the payload never ran


def _state(tmp_path):
    """What save_checkpoint needs, for a tiny model."""
    model = cifar_resnet(8, width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    return model, opt, sched, TrainConfig(epochs=1), History(meta={"model": "resnet8"})


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at inline_container.cc:783] . unexpected pos 4480 vs 4362"),
        OSError(28, "No space left on device"),
    ],
)
def test_full_disk_gives_one_clear_oserror_and_keeps_the_previous_checkpoint(
    error, tmp_path, monkeypatch
):
    path = tmp_path / "checkpoint.pt"
    model, opt, sched, cfg, history = _state(tmp_path)
    save_checkpoint(path, model, opt, sched, 1, cfg, history)
    before = path.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(100)  # a half-written temporary file
        raise error

    monkeypatch.setattr(torch, "save", full_disk)
    for write in (
        lambda: save_checkpoint(path, model, opt, sched, 2, cfg, history),
        lambda: atomic_save({"x": 1}, path),
    ):
        with pytest.raises(OSError, match=r"could not write .*checkpoint\.pt: .*space.*--out") as e:
            write()
        assert "\n" not in str(e.value) and "unexpected pos" not in str(e.value)
        assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
        assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_other_failures_of_torch_save_pass_through(tmp_path, monkeypatch):
    def broken(obj, f, *a, **k):
        raise RuntimeError("cannot pickle 'generator' object")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"x": 1}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_history_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "history.json"
    path.write_bytes(b'{"meta": {}, "epochs": []}\xff\xfe')
    with pytest.raises(ValueError, match=f"{path} is not UTF-8 text .*0xff at offset 26"):
        History.load(path)


# ---------------------------------------------------------------- from the reliability issues


def test_history_load_names_the_file_and_the_problem(tmp_path):
    good = History(epochs=[{"epoch": 1, "seconds": 1.0, "test_acc": 0.5}], meta={"model": "m"})
    good.save(tmp_path / "good.json")
    text = (tmp_path / "good.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="cut.json is not valid JSON.*truncated"):
        History.load(tmp_path / "cut.json")
    (tmp_path / "oops.json").write_text(json.dumps({"meta": {}, "epochs": "oops"}))
    with pytest.raises(ValueError, match="oops.json: 'epochs' must be a list"):
        History.load(tmp_path / "oops.json")
    (tmp_path / "noseconds.json").write_text(json.dumps({"meta": {}, "epochs": [{"epoch": 1}]}))
    with pytest.raises(
        ValueError, match="noseconds.json: epoch record 0: lacks a number for 'seconds'"
    ):
        History.load(tmp_path / "noseconds.json")


OLD_CFG = TrainConfig(
    epochs=2,
    batch_size=50,
    lr=0.05,
    device="cpu",
    precision="fp32",
    channels_last=False,
    schedule="onecycle",
    warmup=1,
    label_smoothing=0.1,
    ema=0.9,
)
TIMINGS = ("seconds", "images_per_sec", "eval_seconds")


def _float_tensors(ckpt: dict) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint that training computes in floating point: the weights, the
    optimiser's momentum and the average. Another CPU computes them with other kernels, so
    they agree with ours only to rounding (and so do the History's losses)."""
    out = {f"model.{k}": v for k, v in ckpt["model"].items() if v.is_floating_point()}
    out |= {f"ema.{k}": v for k, v in ckpt["ema"].items() if v.is_floating_point()}
    for i, state in ckpt["optimizer"]["state"].items():
        out |= {f"optimizer.{i}.{k}": v for k, v in state.items() if v.is_floating_point()}
    return out


def _with_values_of(old: dict, here: dict) -> dict:
    """``old`` (its format, fields and RNG state) holding the numbers computed ``here``: the
    floating-point tensors and the epoch's losses."""
    mixed = copy.deepcopy(old)
    mixed["history"]["epochs"] = copy.deepcopy(here["history"]["epochs"])
    mixed["model"] = {k: here["model"][k].clone() for k in old["model"]}
    mixed["ema"] = {k: here["ema"][k].clone() for k in old["ema"]}
    mixed["optimizer"]["state"] = copy.deepcopy(here["optimizer"]["state"])
    return mixed


def _stopped_after_epoch_1(tiny_data, folder):
    def stop(_history):
        raise KeyboardInterrupt

    seed_everything(0)
    train(
        cifar_resnet(8, width=4),
        tiny_data,
        OLD_CFG,
        progress=False,
        checkpoint_dir=folder,
        on_epoch=stop,
    )
    return load_checkpoint(folder / "checkpoint.pt")


def test_a_checkpoint_of_the_trainer_before_the_split_resumes_to_the_same_weights(
    tiny_data, tmp_path
):
    """tests/data holds epoch 1 of a 2-epoch run written by commit f3a07df, before the trainer
    was split (tests/data/make_old_checkpoint.py), on another machine. Today's code, stopped
    after the same epoch here, wrote the same checkpoint: every field equal, the RNG state
    included, and its floating-point tensors equal to rounding (another CPU's kernels round
    differently: measured 3e-8 at most, against steps of 1e-3). Resuming the old file, with
    the tensors computed here, ends with the weights, the average and the History of an
    uninterrupted run of today's code, bit for bit; the old file itself resumes to within
    rounding."""
    old = torch.load(DATA / "resnet8_epoch1_of_2_f3a07df.pt", weights_only=True)
    here = _stopped_after_epoch_1(tiny_data, tmp_path / "here")
    assert old.keys() == here.keys()
    floats_old, floats_here = _float_tensors(old), _float_tensors(here)
    assert floats_old.keys() == floats_here.keys()
    for k, v in floats_here.items():
        torch.testing.assert_close(floats_old[k], v, rtol=1e-5, atol=1e-6, msg=k)
    for key in ("format", "build", "config", "epoch", "scheduler", "data", "signature"):
        assert old[key] == here[key], key
    assert torch.equal(old["torch_rng"], here["torch_rng"])  # integer state: machine-free
    assert old["optimizer"]["param_groups"] == here["optimizer"]["param_groups"]

    seed_everything(0)
    fresh_model = cifar_resnet(8, width=4)
    fresh = train(fresh_model, tiny_data, OLD_CFG, progress=False, checkpoint_dir=tmp_path / "new")
    new_ckpt = load_checkpoint(tmp_path / "new" / "checkpoint.pt")
    for name, ckpt in (("mixed", _with_values_of(old, here)), ("old", old)):
        folder = tmp_path / name
        folder.mkdir()
        torch.save(ckpt, folder / "checkpoint.pt")
        model = cifar_resnet(8, width=4)
        resumed = train(
            model, tiny_data, OLD_CFG, progress=False, checkpoint_dir=folder, resume=True
        )
        assert resumed.meta["resumed_at_epochs"] == [1]
        same = torch.equal if name == "mixed" else _close
        for k, v in fresh_model.state_dict().items():
            assert same(model.state_dict()[k], v), f"{name}: {k}"
        for k, v in new_ckpt["ema"].items():
            assert same(load_checkpoint(folder / "checkpoint.pt")["ema"][k], v), f"{name}: {k}"
        got = [{k: r[k] for k in r if k not in TIMINGS} for r in resumed.epochs]
        want = [{k: r[k] for k in r if k not in TIMINGS} for r in fresh.epochs]
        if name == "old":
            want = [pytest.approx(r, rel=1e-5) for r in want]
        assert got == want, name


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- bad input (issue 29)


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("test_acc", 7.5, "test_acc 7.5 is not a fraction in [0, 1]"),
        ("test_acc", float("nan"), "test_acc nan is not a fraction in [0, 1]"),
        ("train_acc", -0.1, "train_acc -0.1 is not a fraction in [0, 1]"),
        ("test_acc_raw", "0.9", "test_acc_raw '0.9' is not a fraction in [0, 1]"),
        ("train_loss", float("inf"), "train_loss inf is not a finite number"),
        ("test_loss", float("nan"), "test_loss nan is not a finite number"),
    ],
)
def test_history_load_refuses_numbers_a_record_cannot_hold(tmp_path, field, value, says):
    epochs = [{"epoch": 1, "seconds": 1.0, "test_acc": 0.5, "test_loss": None, field: value}]
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"meta": {}, "epochs": epochs}))  # NaN as JSON writes it
    with pytest.raises(ValueError, match=f"h.json: epoch record 0: {re.escape(says)}"):
        History.load(path)
    epochs[0][field] = None  # not measured: allowed
    path.write_text(json.dumps({"meta": {}, "epochs": epochs}))
    assert History.load(path).final[field] is None


def _checkpoint(tmp_path, **changes):
    """A real checkpoint of a tiny model at tmp_path/c.pt, with ``changes`` made to its fields
    (a value of ... removes the field)."""
    model, opt, sched, cfg, history = _state(tmp_path)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, opt, sched, 1, cfg, history)
    state = torch.load(path, weights_only=True)
    for k, v in changes.items():
        state.pop(k) if v is ... else state.__setitem__(k, v)
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"model_name": ...}, "no 'model_name'"),
        ({"build": "cifar_resnet"}, "'build' is a str, not a dict"),
        ({"build": {"name": "cifar_resnet"}}, "'build' lacks its name and kwargs"),
        ({"history": {"epochs": []}}, "'history' lacks its meta and epochs"),
        ({"epoch": "1"}, "'epoch' is a str, not a int"),
    ],
)
def test_a_checkpoint_with_a_missing_or_odd_field_is_named(tmp_path, changes, says):
    path = _checkpoint(tmp_path, **changes)
    with pytest.raises(ValueError, match=f"c.pt is a damaged resnet_lab checkpoint .*{says}"):
        load_checkpoint(path)
    assert load_checkpoint(_checkpoint(tmp_path, history=None, build=None))["epoch"] == 1


def test_every_shipped_weight_and_the_old_checkpoint_still_load():
    root = Path(__file__).resolve().parents[1]
    for path in [*(root / "results").rglob("*.pt"), *DATA.glob("*.pt")]:
        assert load_checkpoint(path)["model_name"], path


def test_temporary_files_of_dead_writers_are_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".checkpoint.pt.tmp-{dead.pid}"  # as a SIGKILL mid-write leaves it
    live = tmp_path / f".history.json.tmp-{os.getpid()}"
    other = tmp_path / ".notes.tmp-abc"  # not ours: not a pid
    for p in (left, live, other):
        p.write_bytes(b"half")
    assert remove_dead_temps(tmp_path) == [left]
    assert not left.exists() and live.exists() and other.exists()


def test_the_summary_is_one_sentence_wrapped_to_the_page():
    hardware = "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, 2 threads"
    h = History(
        epochs=[{"epoch": 1, "seconds": 90.0, "test_acc": 0.143}],
        meta={"model": "plain20", "hardware": hardware},
    )
    lines = h.summary().splitlines()
    assert len(lines) > 1 and max(map(len, lines)) <= 77
    assert " ".join(h.summary().split()) == (
        f"plain20: test accuracy 14.30% after 1 epochs, 1.5 min of training on {hardware}"
    )
