"""Reliability: no run is lost, no stale or corrupted data is served, every bad input is a clear
one-line error. One test (or more) per defect of issue 10; each failed on the code before
the fix."""

import json
import pickle
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from resnet_lab.__main__ import main
from resnet_lab.checkpoints import CheckpointMismatch, History, RunExistsError
from resnet_lab.cifar10 import DataError, load_cifar10
from resnet_lab.config import TrainConfig
from resnet_lab.experiments import run_experiment
from resnet_lab.models import build_model, cifar_resnet
from resnet_lab.results import load_results
from resnet_lab.train import train
from tests.conftest import make_archives

CFG = TrainConfig(
    epochs=1, batch_size=10, lr=0.05, device="cpu", precision="fp32", channels_last=False
)


def cli_train(folder, out, *extra):
    return main(
        [
            "train",
            "--model",
            "resnet8",
            "--data",
            str(folder),
            "--no-download",
            "--epochs",
            "1",
            "--batch-size",
            "10",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, f"expected a one-line error, got {err}"
    return err[0]


# ---------------------------------------------------------------------------- 1. overwrite


def test_cli_refuses_to_overwrite_a_run(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_train(image_folder, out) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert cli_train(image_folder, out, "--lr", "0.2") == 2
    msg = last_error(capsys)
    assert (
        "already holds a run" in msg
        and "--resume" in msg
        and "--out" in msg
        and "--overwrite" in msg
    )
    assert (out / "checkpoint.pt").read_bytes() == before  # untouched
    assert cli_train(image_folder, out, "--lr", "0.2", "--overwrite") == 0


def test_train_and_run_experiment_refuse_to_overwrite(tiny_data, tmp_path):
    train(
        cifar_resnet(8, width=4),
        tiny_data,
        replace(CFG, batch_size=50),
        progress=False,
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(RunExistsError, match="resume=True.*overwrite=True"):
        train(
            cifar_resnet(8, width=4),
            tiny_data,
            replace(CFG, batch_size=50),
            progress=False,
            checkpoint_dir=tmp_path,
        )
    kw = dict(
        data=tiny_data,
        runs_dir=tmp_path / "runs",
        progress=False,
        epochs=1,
        compile=False,
        precision="fp32",
        device="cpu",
        batch_size=50,
    )
    out = tmp_path / "results" / "r.json"
    run_experiment("degradation/plain20", out=out, **kw)
    with pytest.raises(RunExistsError, match="already recorded"):
        run_experiment("degradation/plain20", out=out, **kw)
    run_experiment("degradation/plain20", out=out, overwrite=True, **kw)


# ---------------------------------------------------------------------------- 2. stale cache


def test_cache_follows_a_replaced_test_archive(image_folder, tmp_path):
    root = make_archives(image_folder, tmp_path / "arch", sums=False)
    first = load_cifar10(root, download=False)
    # replace the test archive: one image fewer in one class
    (image_folder / "test" / "cat" / "0000.png").unlink()
    make_archives(image_folder, tmp_path / "new", sums=False)
    shutil.copy(tmp_path / "new" / "test.tar.gz", root / "test.tar.gz")
    second = load_cifar10(root, download=False)
    assert len(first.test_labels) == 20 and len(second.test_labels) == 19


def test_cache_follows_a_changed_image_folder(image_folder):
    first = load_cifar10(image_folder, download=False)
    (image_folder / "test" / "dog" / "0001.png").unlink()
    assert len(load_cifar10(image_folder, download=False).test_labels) == len(first.test_labels) - 1


# ---------------------------------------------------------------------------- 3. corrupt archive


@pytest.mark.parametrize("where", [0.5, 0.9])
def test_flipped_byte_without_checksums_is_reported_as_corruption(image_folder, tmp_path, where):
    root = make_archives(image_folder, tmp_path / "arch", sums=False)
    blob = bytearray((root / "train.tar.gz").read_bytes())
    blob[int(len(blob) * where)] ^= 0xFF
    (root / "train.tar.gz").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="train.tar.gz is corrupted"):
        load_cifar10(root, download=False, cache=False)


# ---------------------------------------------------------------------------- 4. seeds


def _without_times(h: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if "sec" not in k} for r in h["epochs"]]


def test_same_seed_same_history_from_the_cli(image_folder, tmp_path):
    for name in ("a", "b"):
        assert cli_train(image_folder, tmp_path / name, "--seed", "3", "--epochs", "2") == 0
    a, b = (json.loads((tmp_path / n / "history.json").read_text()) for n in ("a", "b"))
    assert _without_times(a) == _without_times(b)
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------- 5. resume checks


def test_resume_refuses_another_network_with_the_same_shapes(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_train(image_folder, out) == 0
    capsys.readouterr()
    rc = main(
        [
            "train",
            "--model",
            "plain8",
            "--data",
            str(image_folder),
            "--no-download",
            "--epochs",
            "2",
            "--batch-size",
            "10",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--out",
            str(out),
            "--resume",
            "--no-progress",
        ]
    )
    assert rc == 2
    msg = last_error(capsys)
    assert "holds a resnet8" in msg and "is a plain8" in msg


def test_resume_refuses_other_data(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_train(image_folder, out, "--subset", "20") == 0
    capsys.readouterr()
    assert cli_train(image_folder, out, "--subset", "10", "--resume", "--epochs", "2") == 2
    msg = last_error(capsys)
    assert "other data" in msg and "10 train" in msg and "20 train" in msg


# ---------------------------------------------------------------------------- 6. evaluate rebuilds


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet14", {"width": 32}),
        ("article_fixed", {"skip": False}),
        ("resnet8", {"shortcut": "B"}),
    ],
)
def test_evaluate_rebuilds_every_model_train_can_save(image_folder, tmp_path, capsys, name, kwargs):
    data = load_cifar10(image_folder, download=False)
    model = build_model(name, **kwargs)
    train(model, data, CFG, progress=False, checkpoint_dir=tmp_path)
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "checkpoint.pt"),
                "--data",
                str(image_folder),
                "--no-download",
            ]
        )
        == 0
    )
    assert f"{model.name} after 1 epochs" in capsys.readouterr().out


# ---------------------------------------------------------------------------- 7. unwritable --out


def test_unwritable_out_fails_before_training(image_folder, tmp_path, capsys, monkeypatch):
    import resnet_lab.train as T

    (tmp_path / "afile").write_text("a file, not a folder")
    out = tmp_path / "afile" / "run"
    monkeypatch.setattr(
        T, "train_one_epoch", lambda *a, **k: pytest.fail("trained before checking --out")
    )
    assert cli_train(image_folder, out) == 2
    msg = last_error(capsys)
    assert f"cannot write to {out}" in msg


# ---------------------------------------------------------------------------- 8, 9. settings


@pytest.mark.parametrize(
    "flag, value", [("--nesterov", "ture"), ("--flip", "maybe"), ("--tta", "2")]
)
def test_boolean_flags_refuse_anything_but_booleans(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", flag, value])
    assert e.value.code == 2
    assert "expected true or false" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value", [("--nesterov", "yes"), ("--flip", "0"), ("--tta", "FALSE")]
)
def test_boolean_flags_accept_the_usual_spellings(flag, value):
    from resnet_lab.__main__ import build_parser

    args = build_parser().parse_args(["train", flag, value])
    assert getattr(args, flag[2:]) is (value.lower() in ("yes", "true", "1"))


@pytest.mark.parametrize(
    "field, value",
    [
        ("eval_every", 0),
        ("crop_pad", -3),
        ("epochs", 0),
        ("lr", -0.1),
        ("lr", float("nan")),
        ("momentum", 1.5),
        ("batch_size", 2.5),
        ("label_smoothing", 1.0),
        ("warmup", -1),
        ("seed", -1),
        ("device", "gpu"),
        ("nesterov", "yes"),
        ("channels_last", "sometimes"),
        ("lr_scales", {"backbone": -1}),
        ("optimizer", "rmsprop"),
    ],
)
def test_every_config_field_is_validated_by_name(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be"):
        TrainConfig(**{field: value})


def test_cli_bad_setting_is_one_line_before_any_data(tmp_path, capsys):
    rc = main(["train", "--eval-every", "0", "--data", str(tmp_path / "nowhere"), "--no-download"])
    assert rc == 2
    assert "TrainConfig.eval_every must be a positive integer, got 0" in last_error(capsys)


# ---------------------------------------------------------------------------- 10. History.load


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
        ValueError, match="noseconds.json: epoch record 0 lacks a number for \\['seconds'\\]"
    ):
        History.load(tmp_path / "noseconds.json")


def test_load_results_skips_a_bad_file_with_a_note(tmp_path):
    folder = tmp_path / "degradation"
    h = History(epochs=[{"epoch": 1, "seconds": 1.0, "test_acc": 0.5}])
    h.save(folder / "plain20-seed0.json")
    (folder / "plain20-seed1.json").write_text("{ broken")
    notes: list[str] = []
    runs = load_results("degradation/plain20", tmp_path, notes=notes)
    assert len(runs["degradation/plain20"]) == 1
    assert len(notes) == 1 and "skipped plain20-seed1.json" in notes[0]


# ---------------------------------------------------------------------------- 11. CLI errors


def test_unknown_model_is_reported_before_the_data(tmp_path, capsys):
    rc = main(
        ["train", "--model", "resnet21", "--data", str(tmp_path / "nowhere"), "--no-download"]
    )
    assert rc == 2
    msg = last_error(capsys)
    assert "depth must be 6n+2" in msg and "nowhere" not in msg


def test_bad_data_and_bad_checkpoint_are_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--no-download"]) == 2
    assert "CIFAR-10 not found" in last_error(capsys)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "junk.pt")]) == 2
    assert "not a readable checkpoint" in last_error(capsys)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="6n\\+2"):
        main(["--debug", "train", "--model", "resnet21"])


def test_ctrl_c_saves_and_exits_130(image_folder, tmp_path, monkeypatch, capsys):
    import resnet_lab.train as T

    real = T.train_one_epoch

    def interrupted_in_epoch_2(run, epoch, bar=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(run, epoch, bar)

    monkeypatch.setattr(T, "train_one_epoch", interrupted_in_epoch_2)
    out = tmp_path / "run"
    assert cli_train(image_folder, out, "--epochs", "3") == 130
    assert "--resume" in capsys.readouterr().err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(T, "train_one_epoch", real)
    assert cli_train(image_folder, out, "--epochs", "3", "--resume") == 0
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())["epochs"]] == [
        1,
        2,
        3,
    ]


# ---------------------------------------------------------------------------- minor


def test_failed_download_leaves_no_new_folder(tmp_path, monkeypatch):
    from resnet_lab.download import DownloadError

    def offline(*a, **k):
        raise DownloadError("no network")

    monkeypatch.setattr("resnet_lab.cifar10.fetch", offline)
    target = tmp_path / "typo" / "cifar"
    with pytest.raises(DataError, match="CIFAR-10 download: no network. To retry"):
        load_cifar10(target, download=True)
    assert not (tmp_path / "typo").exists()


def test_data_env_pointing_at_a_file(tmp_path, monkeypatch):
    (tmp_path / "cifar.tar").write_text("x")
    monkeypatch.setenv("RESNET_LAB_DATA", str(tmp_path / "cifar.tar"))
    with pytest.raises(
        DataError, match="cifar.tar \\(from \\$RESNET_LAB_DATA\\) is a file, not a folder"
    ):
        load_cifar10(download=False)


def test_python_batch_of_the_wrong_size_names_the_file(python_batches):
    path = python_batches / "cifar-10-batches-py" / "data_batch_3"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((10, 100), dtype=np.uint8), "labels": list(range(10))}, f)
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load_cifar10(python_batches, download=False)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_num_classes_must_be_positive(n):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        cifar_resnet(20, num_classes=n)


def test_resume_checks_are_in_train_too(tiny_data, tmp_path):
    train(
        cifar_resnet(8, width=4),
        tiny_data,
        replace(CFG, batch_size=50),
        progress=False,
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(CheckpointMismatch, match="other data"):
        train(
            cifar_resnet(8, width=4),
            tiny_data.subset(100),
            replace(CFG, batch_size=50, epochs=2),
            progress=False,
            checkpoint_dir=tmp_path,
            resume=True,
        )
