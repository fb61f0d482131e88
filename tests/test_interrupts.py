"""Interrupted runs lose nothing: after SIGINT, SIGTERM or SIGKILL of ``train``, in one process
or of one rank under torchrun, ``--resume`` ends with exactly the weights of an uninterrupted
run (``torch.equal``), because every epoch ends with an atomic checkpoint and the RNG state.

The interrupted run pauses where the test says (tests/children.py: after its first epoch is
saved) and gets the signal there, so a fast machine cannot finish the run first; its
children start with SIGINT at its default, however the test run itself was started."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from tests.children import paused_env, popen, run, wait_until_ready
from tests.conftest import TRAIN_ARGS, cli_train

EPOCHS = 3
PAUSE_AT = 1  # the child pauses at the start of epoch index 1: one epoch is saved
ARGS = [
    *TRAIN_ARGS,
    *["--channels-last", "false", "--seed", "0", "--lr", "0.05"],
    *["--epochs", str(EPOCHS)],
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _weights(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after the resume"


def _interrupted(cmd, folder, kill, ranks=1, **kw):
    """Start ``cmd``, wait until its training has paused after epoch ``PAUSE_AT`` (saved),
    then ``kill(proc)``; return the process, ended, and its stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    env = paused_env(ENV, folder.parent / f"{folder.name}-pause", PAUSE_AT)
    proc = popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)
    wait_until_ready(proc, folder.parent / f"{folder.name}-pause", ranks)
    kill(proc)
    _, err = proc.communicate(timeout=120)
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["epoch"] == PAUSE_AT, err
    return proc, err


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
    done = run(_train_cmd(image_folder, whole), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    cut = tmp_path / "cut"
    proc, err = _interrupted(_train_cmd(image_folder, cut), cut, lambda p: p.send_signal(sig))
    if sig in (signal.SIGINT, signal.SIGKILL):
        assert proc.returncode == {signal.SIGINT: 130}.get(sig, -sig), err[-2000:]
    assert proc.returncode != 0, err[-2000:]
    resumed = run(
        _train_cmd(image_folder, cut, "--resume"), env=ENV, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_weights(_weights(whole), _weights(cut))


def _children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    return [int(c) for c in open(path).read().split()] if os.path.exists(path) else []


def _torchrun_cmd(data, out, *extra):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which(
        "torchrun"
    )
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    python_m = _train_cmd(data, out, *extra)[1:]  # torchrun runs the same "-m resnet_lab train"
    # --standalone: the rendezvous takes a free port
    return [torchrun, "--standalone", "--nproc_per_node", "2", *python_m]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_torchrun_resume_after_one_rank_is_killed_equals_an_uninterrupted_run(
    image_folder, tmp_path
):
    whole = tmp_path / "whole"
    done = run(_torchrun_cmd(image_folder, whole), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    cut = tmp_path / "cut"

    def kill_one_rank(p):
        ranks = _children(p.pid)
        assert ranks, "no worker processes found"
        os.kill(ranks[-1], signal.SIGKILL)

    proc, _ = _interrupted(_torchrun_cmd(image_folder, cut), cut, kill_one_rank, ranks=2)
    assert proc.returncode != 0
    resumed = run(
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
        "--standalone",
        "--nproc-per-node",
        "2",
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(out),
        *ARGS,
    ]
    proc, err = _interrupted(
        cmd, out, lambda p: os.killpg(p.pid, signal.SIGINT), ranks=2, start_new_session=True
    )
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted"), err[-3000:]
    resumed = run([*cmd, "--resume"], env=ENV, capture_output=True, text=True)
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


def test_children_start_with_sigint_at_its_default_whatever_the_parent_ignores():
    """`(trap '' INT; make test)`, nohup and many CI runners start the tests with SIGINT
    ignored; a plain child inherits that, a child of tests/children.py does not."""
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        plain = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
        ours = run(probe, capture_output=True, text=True).stdout.strip()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert plain in ("1", "Handlers.SIG_IGN")  # what the test children inherited before
    assert "default_int_handler" in ours  # Python's own: Ctrl-C raises KeyboardInterrupt
