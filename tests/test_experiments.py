import pytest
import torch

from resnet_lab.experiments import EXPERIMENTS, experiment_names, run_experiment
from resnet_lab.models import build_model
from resnet_lab.train import History, load_checkpoint


def test_experiment_names_and_groups():
    assert experiment_names("cpu_resnet20") == ["cpu_resnet20"]
    assert experiment_names("degradation") == [f"degradation/{n}" for n in ("plain20", "plain56", "resnet20", "resnet56")]
    with pytest.raises(ValueError, match="unknown experiment"):
        experiment_names("nope")


def test_recipes_fit_the_book_claims():
    assert EXPERIMENTS["cpu_resnet20"].model == "resnet20"
    assert EXPERIMENTS["cpu_speedrun"].config.tta


def test_run_experiment_writes_history_and_weights(tiny_data, tmp_path):
    out = tmp_path / "results" / "degradation" / "resnet20.json"
    h = run_experiment("degradation/resnet20", data=tiny_data, out=out, runs_dir=tmp_path / "runs", progress=False,
                       epochs=1, compile=False, precision="fp32", channels_last=False, device="cpu", batch_size=50)
    assert History.load(out).epochs == h.epochs and h.meta["experiment"] == "degradation/resnet20"
    model = build_model("resnet20")
    state = load_checkpoint(out.with_suffix(".pt"), model)
    assert state["format"] == "resnet_lab.weights/1" and "optimizer" not in state
    ckpt = torch.load(tmp_path / "runs" / "degradation" / "resnet20-seed0" / "checkpoint.pt", weights_only=True)
    for k, v in ckpt["model"].items():
        assert torch.equal(model.state_dict()[k], v)
