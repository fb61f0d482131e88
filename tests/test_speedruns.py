"""resnet_lab.lab.speedruns: the speed runs' records as the appendix reads and prints them."""

from dataclasses import asdict, replace

import pytest

from resnet_lab.checkpoints import History
from resnet_lab.config import TrainConfig
from resnet_lab.lab.experiments import EXPERIMENTS
from resnet_lab.lab.results import compare
from resnet_lab.lab.speedruns import (
    SPEED_RUNS,
    best_recipe,
    compile_line,
    cpu_runs,
    describe_recipe,
    ema_span,
    epoch_costs,
    format_technique_diffs,
    full_epoch_line,
    low_res_line,
    run_line,
    technique_runs,
)


def _run(acc=None, *, config=None, seconds=(), name="x", **meta):
    epochs = [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds or (1.0,))]
    if acc is not None:
        epochs[-1]["test_acc"] = acc
    meta = {"config": config or {}, "experiment": name, "hardware": "cpu", "seed": 0, **meta}
    return History(epochs=epochs, meta=meta)


def test_epoch_costs_leave_out_the_first_epoch_of_each_size():
    cfg = asdict(replace(TrainConfig(), epochs=6, low_res=24, low_res_fraction=0.5))
    h = _run(config=cfg, seconds=(50, 10, 12, 40, 20, 22))  # 3 small epochs, then 3 full
    assert epoch_costs(h) == {"first": 50, "low_res": 11, "full": 21}
    plain = _run(config=asdict(replace(TrainConfig(), epochs=4)), seconds=(9, 3, 1, 2))
    assert epoch_costs(plain) == {"first": 9, "low_res": None, "full": 2}


def test_technique_runs_are_named_and_ordered_by_the_experiments():
    names = [n for n in EXPERIMENTS if n.startswith("speedrun/")]
    sweep = {n: [_run(0.9, name=n)] for n in reversed(names)}  # any order in
    runs = technique_runs(sweep)
    assert next(iter(runs)) == "cpu_speedrun's recipe"
    assert len(runs) == len(names) and not any(k.startswith("speed-run") for k in runs)
    assert [h.meta["experiment"] for hs in runs.values() for h in hs] == names


def test_best_recipe_is_the_best_mean_not_the_luckiest_seed():
    steady = [_run(0.89), _run(0.89), _run(0.89)]
    lucky = [_run(0.95), _run(0.80)]  # the best single run, the worse mean
    assert best_recipe({"steady": steady, "lucky": lucky}) == "steady"
    assert best_recipe({"steady": steady, "untested": [_run()]}) == "steady"
    with pytest.raises(ValueError, match="no recipe has a final 'test_acc'"):
        best_recipe({"untested": [_run()]})


def test_cpu_runs_reads_chapter_5s_run_and_the_speed_runs_in_order():
    runs = cpu_runs(notes=[])
    assert list(runs) == [n for n in ("cpu_resnet20", *SPEED_RUNS) if n in runs]
    assert "cpu_speedrun" in runs and all(
        h.meta["experiment"] in runs for hs in runs.values() for h in hs
    )


def test_run_line_says_how_far_a_speed_run_fell_short():
    h = _run(0.875, seconds=(60, 60))
    assert (
        run_line("cpu_speedrun", h)
        == "cpu_speedrun: 87.50% in 2.0 min on cpu, 2.5 points short of 90%"
    )
    assert run_line("cpu_resnet20", h) == "cpu_resnet20: 87.50% in 2.0 min on cpu"


def test_compile_line_compares_the_first_epoch_with_its_size():
    cfg = asdict(replace(TrainConfig(), epochs=6, low_res=24, low_res_fraction=0.5))
    line = compile_line("r", _run(config=cfg, seconds=(50, 10, 12, 40, 20, 22)))
    assert "first epoch 50 s, the others of its size 11 s (median), +39.0 s" in line


def test_technique_diffs_list_the_largest_gain_first():
    acc = {"base": (0.9, 0.01, 2), "up": (0.95, 0.01, 2), "down": (0.85, 0.01, 2)}
    lines = format_technique_diffs(acc, compare(acc, "base"), "base").splitlines()
    assert lines[0] == "unchanged recipe: 90.00% ± 1.00% (n=2)"
    assert lines[1].startswith("+5.00") and lines[1].endswith("(better): up")
    assert lines[2].startswith("-5.00") and lines[2].endswith("(worse): down")


def test_ema_span_counts_the_steps_of_the_average_and_of_the_run():
    cfg = asdict(replace(TrainConfig(), ema=0.999, batch_size=100))
    h = _run(config=cfg, seconds=(10, 10))
    h.epochs[0]["images_per_sec"] = 500  # 5,000 images an epoch: 50 steps
    decay, horizon, steps = ema_span(h)
    assert decay == 0.999 and horizon == pytest.approx(1000) and steps == 100


def test_low_res_line_measures_a_small_epoch_against_a_full_one():
    cfg = asdict(replace(TrainConfig(), epochs=6, low_res=24, low_res_fraction=0.5))
    line = low_res_line(_run(config=cfg, seconds=(50, 10, 12, 40, 20, 22)))
    assert line == "cpu: 3 of 6 epochs at 24x24, 11 s each; at 32x32 21 s (0.52 of it, medians)"


def test_describe_recipe_gives_its_mean_and_what_changed():
    start = _run(0.9, config=asdict(TrainConfig()), name="a", seconds=(60,))
    cfg = asdict(replace(TrainConfig(), lr=0.2))
    best = _run(0.92, config=cfg, name="b", seconds=(120,))
    other = _run(0.90, config=cfg, name="b", seed=1, seconds=(180,))
    lines = describe_recipe([best, other], start).splitlines()
    assert lines[0].startswith("b: 91.00% ± ") and lines[0].endswith(
        "over 2 seed(s), 2.0-3.0 min of training on cpu"
    )
    assert lines[1] == "  changed from a: lr 0.1 -> 0.2"
    assert (
        describe_recipe([start], start)
        == "a: 90.00% over 1 seed(s), 1.0-1.0 min of training on cpu"
    )


def test_every_line_fits_the_page_with_a_long_processor_name():
    """The lines the appendix prints wrap to 77 columns, whatever the hardware is called."""
    cfg = asdict(replace(TrainConfig(), epochs=6, low_res=24, low_res_fraction=0.5))
    hardware = "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, 2 threads"
    h = _run(0.875, config=cfg, seconds=(50, 10, 12, 40, 20, 22), hardware=hardware)
    h.meta["experiment"] = "cpu_speedrun_plus_long"
    texts = [
        run_line("cpu_speedrun_plus_long", h),
        compile_line("cpu_speedrun_plus_long", h),
        low_res_line(h),
        full_epoch_line(h),
        describe_recipe([h, h], _run(0.9, config=asdict(TrainConfig()), name="cpu_resnet20")),
        format_technique_diffs(
            {"unchanged": (0.9, 0.01, 3)},
            {
                "alternating flips + BN biases at 4x + progressive resizing + batch 512": {
                    "diff": 0.0011,
                    "se": 0.0022,
                    "verdict": "within noise",
                }
            },
            "unchanged",
        ),
    ]
    assert "changed from cpu_resnet20" in texts[4]  # the recipe's differences are listed
    lines = [line for text in texts for line in text.splitlines()]
    assert max(map(len, lines)) <= 77, max(lines, key=len)
    assert "points short of 90%" in " ".join(texts[0].split())  # nothing cut, only wrapped
