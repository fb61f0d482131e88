import math
from dataclasses import replace

import pytest
import torch

from resnet_lab.checkpoints import History, load_checkpoint
from resnet_lab.lab.experiments import (
    EXPERIMENTS,
    experiment_names,
    run_experiment,
    run_sweep,
    sweep_runs,
)
from resnet_lab.lab.names import build_model
from resnet_lab.lab.results import compare, load_results, mean_sd, summarize

FAST = dict(
    epochs=1, compile=False, precision="fp32", channels_last=False, device="cpu", batch_size=50
)


def test_experiment_names_and_groups():
    assert experiment_names("cpu_resnet20") == ["cpu_resnet20"]
    assert experiment_names("degradation") == [
        f"degradation/{n}" for n in ("plain20", "plain56", "resnet20", "resnet56")
    ]
    assert experiment_names("seeds") == ["cpu_resnet20"]
    assert len(experiment_names("ablation")) == 6
    with pytest.raises(ValueError, match="unknown experiment"):
        experiment_names("nope")
    assert sweep_runs("degradation/plain20") == [("degradation/plain20", s) for s in (0, 1, 2)]
    assert sweep_runs("degradation", [5]) == [(n, 5) for n in experiment_names("degradation")]


def test_recipes_fit_the_book_claims():
    assert EXPERIMENTS["cpu_resnet20"].model == "resnet20"
    assert EXPERIMENTS["cpu_speedrun"].config.tta
    adam = EXPERIMENTS["optimizer/adam_article"].config
    assert (adam.optimizer, adam.lr, adam.weight_decay, adam.schedule) == (
        "adam",
        1e-3,
        0.0,
        "constant",
    )
    base = EXPERIMENTS["degradation/resnet20"]
    for name in experiment_names("ablation"):  # an ablation changes the model, never the recipe,
        cfg = EXPERIMENTS[name].config  # except the *_bn_nowd pair: no weight decay on BN
        assert cfg.bn_weight_decay == (not name.endswith("bn_nowd"))
        assert replace(cfg, bn_weight_decay=True) == base.config
        assert EXPERIMENTS[name].subset == base.subset
    gpu = EXPERIMENTS["gpu_resnet20"]
    assert (
        gpu.validation == 5000 and gpu.config.batch_size == 128 and gpu.config.schedule == "paper"
    )
    steps = gpu.config.epochs * (45_000 // 128)
    assert abs(steps - 64_000) < 400  # the paper's 64k iterations, divided at 32k and 48k


def test_run_experiment_writes_history_and_weights(tiny_data, tmp_path):
    out = tmp_path / "results" / "degradation" / "resnet20-seed0.json"
    h = run_experiment(
        "degradation/resnet20",
        data=tiny_data,
        out=out,
        runs_dir=tmp_path / "runs",
        progress=False,
        **FAST,
    )
    assert History.load(out).epochs == h.epochs and h.meta["experiment"] == "degradation/resnet20"
    assert h.meta["seed"] == 0
    model = build_model("resnet20")
    state = load_checkpoint(out.with_suffix(".pt"), model)
    assert state["format"] == "resnet_lab.weights/1" and "optimizer" not in state
    ckpt = torch.load(
        tmp_path / "runs" / "degradation" / "resnet20-seed0" / "checkpoint.pt", weights_only=True
    )
    for k, v in ckpt["model"].items():
        assert torch.equal(model.state_dict()[k], v)


def test_seeds_fix_the_run_and_differ_from_each_other(tiny_data, tmp_path):
    kw = dict(data=tiny_data, runs_dir=tmp_path / "runs", progress=False, **FAST)
    a = run_experiment("degradation/plain20", seed=1, out=tmp_path / "a.json", **kw)
    b = run_experiment("degradation/plain20", seed=1, out=tmp_path / "b.json", overwrite=True, **kw)
    c = run_experiment("degradation/plain20", seed=2, out=tmp_path / "c.json", **kw)
    assert a.final["train_loss"] == b.final["train_loss"]
    assert a.final["train_loss"] != c.final["train_loss"]


def test_sweep_skips_recorded_runs_and_resumes(tiny_data, tmp_path):
    kw = dict(
        results_dir=tmp_path / "results",
        runs_dir=tmp_path / "runs",
        progress=False,
        data=tiny_data,
        **FAST,
    )
    done = run_sweep("degradation/plain20", seeds=[0, 1], **kw)
    assert [h.meta["seed"] for h in done] == [0, 1]
    assert (tmp_path / "results" / "degradation" / "plain20-seed1.json").is_file()
    assert (
        run_sweep("degradation/plain20", seeds=[0, 1, 2], **kw)[0].meta["seed"] == 2
    )  # only the new one
    runs = load_results("degradation/plain20", tmp_path / "results")
    assert [h.meta["seed"] for h in runs["degradation/plain20"]] == [0, 1, 2]
    _, sd, n = summarize(runs, "train_loss")["degradation/plain20"]
    assert n == 3 and sd > 0


def test_compare_judges_differences_by_twice_their_standard_error():
    summary = {
        "base": (0.80, 0.01, 4),
        "same": (0.805, 0.01, 4),
        "up": (0.85, 0.01, 4),
        "down": (0.70, 0.02, 3),
        "single": (0.90, 0.0, 1),
    }
    c = compare(summary)
    assert set(c) == {"same", "up", "down", "single"}
    se = math.sqrt(0.01**2 / 4 + 0.01**2 / 4)
    assert c["same"]["se"] == pytest.approx(se) and c["same"]["diff"] == pytest.approx(0.005)
    assert c["same"]["verdict"] == "within noise"
    assert c["up"]["verdict"] == "better" and c["down"]["verdict"] == "worse"
    assert c["single"]["verdict"] == "one seed: no spread to judge by" and math.isnan(
        c["single"]["se"]
    )
    # equal means without spread are no difference
    tied = compare({"base": (0.5, 0.0, 3), "tie": (0.5, 0.0, 3)})["tie"]
    assert tied["verdict"] == "within noise"
    # against another baseline: the verdicts turn round
    assert compare(summary, baseline="up")["base"]["verdict"] == "worse"
    with pytest.raises(KeyError, match="baseline 'nope'"):
        compare(summary, baseline="nope")


def test_plot_differences_draws_each_comparison():
    import matplotlib

    matplotlib.use("Agg")
    from resnet_lab.book.viz import plot_differences

    c = compare({"base": (0.80, 0.01, 4), "up": (0.85, 0.01, 4), "single": (0.9, 0.0, 1)})
    fig = plot_differences(c, xlabel="points", source="made-up numbers")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["up", "single"]
    texts = {t.get_text() for t in ax.texts}
    assert "better (n=4)" in texts and "one seed: no spread to judge by (n=1)" in texts
    assert any("made-up numbers" in t.get_text() for t in fig.texts)


def test_mean_sd():
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert mean_sd([5.0]) == (5.0, 0.0, 1)
    m, _, n = mean_sd([])
    assert n == 0 and math.isnan(m)


def test_runs_caption_says_what_produced_the_runs():
    from resnet_lab.book.viz import runs_caption

    def run(n, seed, hardware):
        return History(
            epochs=[{"epoch": i + 1, "seconds": 60.0} for i in range(n)],
            meta={"seed": seed, "hardware": hardware, "data": "the JPEG copy"},
        )

    text = runs_caption(
        {"a": [run(21, 0, "CPU X"), run(21, 1, "CPU X")], "b": [run(22, 0, "GPU Y")]}
    )
    assert text.startswith("3 recorded runs (a, b; seeds [0, 1]), 21-22 epochs each, 64 min")
    assert "CPU X; GPU Y" in text and text.endswith("Data: the JPEG copy")
    assert "21 epochs each" in runs_caption({"a": [run(21, 0, "CPU X")]})
    assert runs_caption({}) == "no recorded runs"


def test_plot_history_of_many_runs_puts_one_legend_under_the_panels():
    import matplotlib

    matplotlib.use("Agg")
    from resnet_lab.book.viz import plot_history

    def run(n):
        return History(
            epochs=[
                {
                    "epoch": i + 1,
                    "train_loss": 1.0 / (i + 1),
                    "train_acc": 0.1 * i,
                    "test_loss": 1.2 / (i + 1),
                    "test_acc": 0.1 * i,
                    "seconds": 1.0,
                }
                for i in range(n)
            ],
            meta={"model": "m"},
        )

    two = plot_history([run(3), run(4)], labels=["a", "b"], source="made up")
    assert all(ax.get_legend() is not None for ax in two.axes) and not two.legends
    four = plot_history([run(3), run(4), run(5), run(2)], labels=list("abcd"), source="made up")
    assert all(ax.get_legend() is None for ax in four.axes) and len(four.legends) == 1
    assert [t.get_text() for t in four.legends[0].get_texts()] == list("abcd")
    renderer = four.canvas.get_renderer()
    legend_y0 = four.legends[0].get_window_extent(renderer).y0
    cap = next(t for t in four.texts if t.get_text() == "made up")
    assert cap.get_window_extent(renderer).y1 <= legend_y0 + 1, "the caption sits under the legend"
    for ax in four.axes:
        assert (
            ax.get_window_extent(renderer).y0 > four.legends[0].get_window_extent(renderer).y1 - 1
        )
