"""One process per run folder: the lock refuses a second trainer at once, names the first, and
is freed whenever its process ends, even by SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from resnet_lab.checkpoints import HISTORY_NAME
from resnet_lab.lab.experiments import run_experiment
from resnet_lab.lab.runfolder import (
    LOCK_NAME,
    RunExistsError,
    RunLock,
    RunLockedError,
    train_in_folder,
)
from resnet_lab.models import cifar_resnet
from tests.children import popen
from tests.conftest import ONE_EPOCH, TRAIN_ARGS

pytest.importorskip("fcntl")

HOLD = (
    "import sys, time; from resnet_lab.lab.runfolder import RunLock; "
    "RunLock(sys.argv[1]).acquire(); "
    "print('locked', flush=True); time.sleep(60)"
)


def test_a_second_lock_is_refused_naming_the_first(tmp_path):
    with RunLock(tmp_path):
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()} on .*--out"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists(), "a clean exit removes the lock file"
    with RunLock(tmp_path):  # and the folder can be locked again
        pass


def test_the_lock_is_freed_when_its_process_is_killed(tmp_path):
    holder = popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists(), "SIGKILL leaves the file behind..."
    with RunLock(tmp_path):  # ... but not the lock
        pass


def _cli_train(folder, out, epochs):
    cmd = [
        sys.executable,
        "-m",
        "resnet_lab",
        "train",
        *TRAIN_ARGS,
        *("--data", str(folder), "--epochs", str(epochs), "--out", str(out)),
        *("--schedule", "constant"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_cli_runs_into_one_folder_one_refuses(image_folder, tmp_path):
    """Both used to exit 0 and print 'checkpoint and history in ...', and one run vanished."""
    out = tmp_path / "run"
    first = _cli_train(image_folder, out, 25)
    deadline = time.time() + 60
    while not (out / LOCK_NAME).exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    second = _cli_train(image_folder, out, 3)
    results = [p.communicate(timeout=300) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert sorted(codes) == [0, 2], (codes, [r[1][-800:] for r in results])
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    err = results[loser][1].strip().splitlines()[-1]
    assert err.startswith("error: ") and (
        "in use by process" in err or "already holds a run" in err
    ), err
    assert "checkpoint and history in" not in results[loser][0]
    history = json.loads((out / HISTORY_NAME).read_text())
    assert len(history["epochs"]) == (25, 3)[winner], (
        "the folder holds the run that said it succeeded"
    )
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == (25, 3)[winner]
    # Which check refuses depends on timing: the lock while the first holds it, or the
    # overwrite check once the first has saved an epoch. The lock has tests of its own.


def test_a_lock_that_fails_for_another_reason_leaves_no_descriptor(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(37, "No locks available")

    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(real_open(*a, **k)) or opened[-1])
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match="No locks available"):
        RunLock(tmp_path).acquire()
    with pytest.raises(OSError):  # the descriptor was closed
        os.fstat(opened[-1])


def test_the_launcher_exits_2_without_a_command(capsys):
    from resnet_lab.lab.launch import torchrun_args

    with pytest.raises(SystemExit) as stop:
        torchrun_args(["--nproc-per-node", "2"])
    assert stop.value.code == 2 and "name a resnet_lab command" in capsys.readouterr().err


# ---------------------------------------------------------------- from the reliability issues


def test_train_and_run_experiment_refuse_to_overwrite(tiny_data, tmp_path):
    def train_once():
        cfg = replace(ONE_EPOCH, batch_size=50)
        train_in_folder(cifar_resnet(8, width=4), tiny_data, cfg, tmp_path, progress=False)

    train_once()
    with pytest.raises(RunExistsError, match="resume=True.*overwrite=True"):
        train_once()
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
