import json
import shutil
from pathlib import Path

import pytest
import torch

import resnet_lab.book.article  # noqa: F401  (registers the article's networks by name)
from resnet_lab.cifar10 import load_cifar10
from resnet_lab.lab.cli import build_parser, main
from resnet_lab.lab.names import build_model
from resnet_lab.train import train
from tests.conftest import ONE_EPOCH, TRAIN_ARGS, cli_train, last_error


def test_cli_train_and_evaluate(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    train = "train --model resnet8 --no-download --epochs 2 --batch-size 10 --device cpu"
    rc = main([*train.split(), "--data", str(image_folder), "--out", str(out), "--no-progress"])
    assert rc == 0
    hist = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist["epochs"]] == [1, 2]
    assert hist["meta"]["model"] == "resnet8"
    assert "test accuracy" in capsys.readouterr().out
    rc = main(
        [
            "evaluate",
            "--checkpoint",
            str(out / "checkpoint.pt"),
            "--data",
            str(image_folder),
            "--no-download",
        ]
    )
    assert rc == 0
    assert "resnet8 after 2 epochs" in capsys.readouterr().out


# ----------------------------------------------------------------- the CLI's folder checks


REPO = Path(__file__).resolve().parent.parent


def test_resume_refuses_a_folder_with_another_runs_history_only(image_folder, tmp_path, capsys):
    """--resume used to start afresh there and replace the other run's History."""
    assert cli_train(image_folder, tmp_path / "a", "--epochs", "2") == 0
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "a" / "history.json", other / "history.json")
    before = (other / "history.json").read_bytes()
    capsys.readouterr()
    for extra in (["--resume"], []):
        assert cli_train(image_folder, other, *extra) == 2
        msg = last_error(capsys)
        assert "history.json" in msg and "--overwrite" in msg and "--out" in msg, msg
    assert (other / "history.json").read_bytes() == before
    assert cli_train(image_folder, other, "--overwrite") == 0


def test_a_longer_resume_is_refused_unless_the_schedule_is_constant(image_folder, tmp_path, capsys):
    """--epochs 4 then --epochs 8 --resume used to restart the step schedule at the resume point."""
    out = tmp_path / "run"
    assert cli_train(image_folder, out, "--epochs", "2") == 0
    capsys.readouterr()
    assert cli_train(image_folder, out, "--epochs", "4", "--resume") == 2
    msg = last_error(capsys)
    assert "2-epoch run" in msg and "'paper'" in msg and "--epochs 2" in msg, msg
    # a constant schedule does not depend on the run's length: it may be extended
    flat = tmp_path / "flat"
    assert (
        cli_train(image_folder, flat, "--epochs", "2", "--schedule", "constant", "--lr", "0.05")
        == 0
    )
    assert (
        cli_train(
            image_folder,
            flat,
            "--epochs",
            "4",
            "--schedule",
            "constant",
            "--lr",
            "0.05",
            "--resume",
        )
        == 0
    )
    hist = json.loads((flat / "history.json").read_text())
    assert [r["lr"] for r in hist["epochs"]] == [0.05] * 4 and hist["meta"][
        "resumed_at_epochs"
    ] == [2]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--resume", "--overwrite"], ["contradict", "choose one"]),
        (["--out", ""], ["--out is empty"]),
    ],
)
def test_contradictory_or_empty_run_folder_arguments(
    image_folder, tmp_path, capsys, extra, words, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert cli_train(image_folder, tmp_path / "run", *extra) == 2
    msg = last_error(capsys)
    assert all(w in msg for w in words), msg
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "history.json").exists()


def test_resume_without_out_names_the_flag(image_folder, capsys):
    args = ["train", "--model", "resnet8", "--data", str(image_folder), "--no-download", "--resume"]
    assert main(args) == 2
    assert "--resume needs --out" in last_error(capsys)


def test_out_naming_a_checkpoint_file_is_refused(image_folder, tmp_path, capsys):
    target = tmp_path / "run" / "checkpoint.pt"
    assert cli_train(image_folder, target) == 2
    msg = last_error(capsys)
    assert "names a file" in msg and "folder" in msg, msg
    assert not target.exists()


def test_flip_alternate_and_bare_boolean_switches_parse():
    p = build_parser()
    args = p.parse_args(["train", "--flip", "alternate", "--tta", "--nesterov", "false"])
    assert args.flip == "alternate" and args.tta is True and args.nesterov is False
    assert p.parse_args(["evaluate", "--checkpoint", "c.pt", "--tta", "false"]).tta is False
    assert p.parse_args(["evaluate", "--checkpoint", "c.pt", "--tta"]).tta is True


@pytest.mark.parametrize("seed", ["18446744073709551616", "4294967296"])
def test_a_huge_seed_is_one_line(seed, capsys):
    assert main(["train", "--seed", seed]) == 2
    assert "TrainConfig.seed must be an integer from 0 to 2**32 - 1" in last_error(capsys)


@pytest.mark.parametrize("device", ["cuda", "cuda:x", "cuda:7", "mps", "tpu"])
def test_a_device_this_machine_lacks_is_one_line_before_the_data(device, tmp_path, capsys):
    if device.startswith("cuda") and torch.cuda.is_available() and device != "cuda:x":
        pytest.skip("this machine has a GPU")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    missing = tmp_path / "no-data-here"
    assert main(["train", "--device", device, "--data", str(missing), "--no-download"]) == 2
    msg = last_error(capsys)
    assert "device" in msg and "no-data-here" not in msg, msg


def test_an_imagenet_resnet_gets_a_head_for_the_data(image_folder, tmp_path, capsys):
    """--model resnet18 used to train a 1000-class head on CIFAR-10 without a word."""
    out = tmp_path / "r18"
    assert cli_train(image_folder, out, "--model", "resnet18") == 0
    assert (
        "a 10-class head for this data, in place of its default 1000 classes"
        in capsys.readouterr().out
    )
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (
        state["build"]["kwargs"]["num_classes"] == 10 and state["model"]["fc.weight"].shape[0] == 10
    )


@pytest.mark.parametrize(
    "record, classes", [("transfer/pretrained.pt", 6), ("degradation/resnet20-seed0.pt", 10)]
)
def test_evaluate_reads_the_shipped_weights(image_folder, capsys, record, classes):
    """The 6-class pretrained network gave 'IndexError: Target 6 is out of bounds'; the
    degradation weights 'predates resnet_lab 0.1'."""
    path = REPO / "results" / record
    assert (
        main(["evaluate", "--checkpoint", str(path), "--data", str(image_folder), "--no-download"])
        == 0
    )
    out = capsys.readouterr().out
    assert f"images of {classes} classes" in out, out


def test_evaluate_refuses_a_head_of_unknown_classes(image_folder, tmp_path, capsys):
    state = torch.load(REPO / "results" / "transfer" / "pretrained.pt", weights_only=True)
    state["data"] = state["history"]["meta"]["data"] = "some 6-class data"
    torch.save(state, tmp_path / "w.pt")
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "w.pt"),
                "--data",
                str(image_folder),
                "--no-download",
            ]
        )
        == 2
    )
    assert "6-class head and does not record its classes" in last_error(capsys)


# ---------------------------------------------------------------- from the reliability issues


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


def test_resume_refuses_another_network_with_the_same_shapes(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_train(image_folder, out) == 0
    capsys.readouterr()
    plain = ["--model", "plain8", "--data", str(image_folder), "--epochs", "2", "--resume"]
    rc = main(["train", *TRAIN_ARGS, *plain, "--out", str(out)])
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
    train(model, data, ONE_EPOCH, progress=False, checkpoint_dir=tmp_path)
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
    from resnet_lab.lab.cli import build_parser

    args = build_parser().parse_args(["train", flag, value])
    assert getattr(args, flag[2:]) is (value.lower() in ("yes", "true", "1"))


def test_cli_bad_setting_is_one_line_before_any_data(tmp_path, capsys):
    rc = main(["train", "--eval-every", "0", "--data", str(tmp_path / "nowhere"), "--no-download"])
    assert rc == 2
    assert "TrainConfig.eval_every must be a positive integer, got 0" in last_error(capsys)


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


# ---------------------------------------------------------------- bad input (issue 29)


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("model_name", ..., "no 'model_name'"),
        ("history", None, None),  # allowed: evaluates, with the classes of the data
        ("build", "cifar_resnet", "'build' is a str, not a dict"),
        ("history", {"meta": None, "epochs": []}, "'history' lacks its meta and epochs"),
    ],
)
def test_evaluate_a_checkpoint_with_a_missing_or_odd_field(
    image_folder, tmp_path, capsys, field, value, says
):
    """These gave KeyError or TypeError tracebacks."""
    assert cli_train(image_folder, tmp_path / "run") == 0
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state.pop(field) if value is ... else state.__setitem__(field, value)
    torch.save(state, path)
    capsys.readouterr()
    args = ["evaluate", "--checkpoint", str(path), "--data", str(image_folder), "--no-download"]
    if says is None:
        assert main(args) == 0 and "test accuracy" in capsys.readouterr().out
        return
    assert main(args) == 2
    msg = last_error(capsys)
    assert "is a damaged resnet_lab checkpoint" in msg and says in msg


def test_a_bad_world_size_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "abc")
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--no-download"]) == 2
    msg = last_error(capsys)
    assert "WORLD_SIZE='abc'" in msg and "torchrun" in msg and "nowhere" not in msg


def test_list_refuses_seeds_no_run_can_have(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "degradation", "--list", "--seeds", "0,4294967296"])
    assert "seeds must be at most 4294967295" in capsys.readouterr().err
    assert main(["experiment", "degradation/plain20", "--list", "--seeds", "4294967295"]) == 0


def test_ctrl_c_in_the_first_checkpoint_write_offers_no_resume(
    image_folder, tmp_path, capsys, monkeypatch
):
    """It said 'no epoch of this run was saved', then 'interrupted after 1 finished epochs;
    continue with --resume'."""
    import resnet_lab.run as R

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "save_checkpoint", interrupted)
    out = tmp_path / "run"
    assert cli_train(image_folder, out) == 130
    captured = capsys.readouterr()
    assert "none is saved in" in captured.out and "resume=True" not in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("interrupted before the first epoch was saved")
    assert "--resume" not in last
    assert not (out / "checkpoint.pt").exists()


def test_ctrl_c_in_a_later_write_counts_only_the_saved_epochs(
    image_folder, tmp_path, capsys, interrupt_checkpoint_write
):
    interrupt_checkpoint_write(2)
    out = tmp_path / "run"
    assert cli_train(image_folder, out, "--epochs", "3") == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"interrupted: {out} holds 1 finished epochs; continue with --resume --out {out}"
