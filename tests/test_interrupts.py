"""Interrupted runs lose nothing: after SIGINT, SIGTERM or SIGKILL of ``train``, in one process
or of one rank under torchrun, ``--resume`` ends with exactly the weights of an uninterrupted
run (``torch.equal``), because every epoch ends with an atomic checkpoint and the RNG state."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import TRAIN_ARGS, cli_train

EPOCHS = "12"
ARGS = [
    *TRAIN_ARGS,
    *["--channels-last", "false", "--seed", "0", "--lr", "0.05"],
    "--epochs",
    EPOCHS,
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _weights(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after the resume"


def _start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _interrupt_after_first_checkpoint(proc, folder, kill):
    """Wait for the first checkpoint, then ``kill(proc)``; the run must not have finished."""
    deadline = time.time() + 120
    while not (folder / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.01)
    kill(proc)
    _, err = proc.communicate(timeout=120)
    done = torch.load(folder / "checkpoint.pt", weights_only=True)["epoch"]
    assert done < int(EPOCHS), "the run finished before it was interrupted: nothing was tested"
    return err


def _train_cmd(data, out, *extra):
    return [
        sys.executable,
        "-m",
        "resnet_lab",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        *ARGS,
        *extra,
    ]


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
def test_resume_after_a_signal_equals_an_uninterrupted_run(image_folder, tmp_path, sig):
    whole = tmp_path / "whole"
    assert (
        subprocess.run(_train_cmd(image_folder, whole), env=ENV, capture_output=True).returncode
        == 0
    )
    cut = tmp_path / "cut"
    proc = _start(_train_cmd(image_folder, cut))
    _interrupt_after_first_checkpoint(proc, cut, lambda p: p.send_signal(sig))
    if sig == signal.SIGINT:
        assert proc.returncode == 130
    resumed = subprocess.run(
        _train_cmd(image_folder, cut, "--resume"), env=ENV, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_weights(_weights(whole), _weights(cut))


def _children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    return [int(c) for c in open(path).read().split()] if os.path.exists(path) else []


def _torchrun_cmd(data, out, *extra, port="29541"):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which(
        "torchrun"
    )
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    python_m = _train_cmd(data, out, *extra)[1:]  # torchrun runs the same "-m resnet_lab train"
    return [torchrun, "--nproc_per_node", "2", "--master_port", port, *python_m]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_torchrun_resume_after_one_rank_is_killed_equals_an_uninterrupted_run(
    image_folder, tmp_path
):
    whole = tmp_path / "whole"
    done = subprocess.run(
        _torchrun_cmd(image_folder, whole), env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cut = tmp_path / "cut"
    proc = _start(_torchrun_cmd(image_folder, cut))

    def kill_one_rank(p):
        ranks = _children(p.pid)
        assert ranks, "no worker processes found"
        os.kill(ranks[-1], signal.SIGKILL)

    _interrupt_after_first_checkpoint(proc, cut, kill_one_rank)
    assert proc.returncode != 0
    resumed = subprocess.run(
        _torchrun_cmd(image_folder, cut, "--resume"), env=ENV, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_weights(_weights(whole), _weights(cut))


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="sends the terminal's Ctrl-C to a process group"
)
def test_ctrl_c_under_the_launcher_is_one_line_and_130(image_folder, tmp_path):
    """Under plain torchrun, Ctrl-C exits 1 with torchrun's traceback."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "resnet_lab.lab.launch",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29551",
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(out),
        *ARGS,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    err = _interrupt_after_first_checkpoint(proc, out, lambda p: os.killpg(p.pid, signal.SIGINT))
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted"), err[-3000:]
    resumed = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_the_launcher_refuses_a_missing_command():
    from resnet_lab.lab.launch import torchrun_args

    assert torchrun_args(["--nproc-per-node", "2", "train", "--out", "x"]) == [
        "--nproc-per-node",
        "2",
        "-m",
        "resnet_lab",
        "train",
        "--out",
        "x",
    ]
    with pytest.raises(SystemExit):
        torchrun_args(["--nproc-per-node", "2"])


# ---------------------------------------------------------------- from the reliability issues


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
