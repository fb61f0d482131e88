"""DistributedDataParallel on the CPU: two processes under torchrun (gloo) train exactly what one
process trains with the same global batch, and a resumed two-process run continues correctly."""

import json
import os
import shutil
import sys

import pytest
import torch

from resnet_lab.lab.cli import main
from tests.children import run
from tests.conftest import TRAIN_ARGS

ARGS = [
    *TRAIN_ARGS,
    *["--channels-last", "false", "--seed", "0", "--lr", "0.05"],
]


def torchrun(*args, nproc=2):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which(
        "torchrun"
    )
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: the rendezvous takes a free port, so no other program's port is in the way
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "resnet_lab",
        "train",
        *args,
    ]
    out = run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def test_two_processes_match_one(image_folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert (
        main(["train", "--data", str(image_folder), "--epochs", "1", "--out", str(one), *ARGS]) == 0
    )
    torchrun("--data", str(image_folder), "--epochs", "1", "--out", str(two), *ARGS)
    a = torch.load(one / "checkpoint.pt", weights_only=True)
    b = torch.load(two / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():  # weights and BN running statistics
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=f"{k} differs")
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (one, two))
    assert hb["meta"]["hardware"].endswith("x 2 processes")
    assert ha["epochs"][0]["train_loss"] == pytest.approx(hb["epochs"][0]["train_loss"], rel=1e-4)
    assert ha["epochs"][0]["test_acc"] == pytest.approx(hb["epochs"][0]["test_acc"])

    # resume the two-process run for a second epoch: rank 0 wrote, every rank continues (a constant
    # schedule may be extended; tests/test_interrupts.py resumes a killed run of the paper's)
    flat = tmp_path / "flat"
    torchrun(
        "--data",
        str(image_folder),
        "--epochs",
        "1",
        "--out",
        str(flat),
        "--schedule",
        "constant",
        *ARGS,
    )
    torchrun(
        "--data",
        str(image_folder),
        "--epochs",
        "2",
        "--out",
        str(flat),
        "--schedule",
        "constant",
        "--resume",
        *ARGS,
    )
    hist = json.loads((flat / "history.json").read_text())
    assert [r["epoch"] for r in hist["epochs"]] == [1, 2] and hist["meta"]["resumed_at_epochs"] == [
        1
    ]
    assert not list(flat.glob(".*tmp*"))
