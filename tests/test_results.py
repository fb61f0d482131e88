"""resnet_lab.lab.results: config_differences and the paper's recipe it compares with, the
standard error of a difference, and the readers of records behind chapters 5 and 7."""

import json
import math
from dataclasses import asdict, replace

import pytest
import torch

from resnet_lab.checkpoints import History, load_checkpoint, model_name
from resnet_lab.config import TrainConfig, lr_factor
from resnet_lab.lab.experiments import EXPERIMENTS
from resnet_lab.lab.names import build_model
from resnet_lab.lab.results import (
    ABLATION_BASELINE,
    NOT_RECIPE,
    PAPER_RECIPE,
    ablation_runs,
    compare,
    config_differences,
    data_copy,
    final_errors,
    format_differences,
    format_errors,
    format_verdicts,
    load_note,
    load_results,
    load_sweep,
    luck_beyond,
    mean_sd,
    paper_protocol,
    record_weights,
    recorded_model,
    standard_error,
    summarize,
)
from resnet_lab.lab.transfer import PROTOCOL, load_transfer, transfer_summary


def test_config_differences_lists_each_changed_field_in_order():
    base = TrainConfig()
    assert config_differences(base, base) == []
    other = replace(base, tta=True, lr=0.2, label_smoothing=0.1)
    assert config_differences(base, other) == [
        ("lr", 0.1, 0.2),
        ("label_smoothing", 0.0, 0.1),
        ("tta", False, True),
    ]
    # the other way round: the values swap sides
    assert config_differences(other, base)[0] == ("lr", 0.2, 0.1)


def test_config_differences_reads_record_dicts_and_fills_missing_fields():
    cfg = replace(TrainConfig(), epochs=34, ema=0.99)
    record = asdict(cfg)
    assert config_differences(record, cfg) == []
    old = {k: v for k, v in record.items() if k != "ema"}  # a record from before the field
    assert config_differences(old, cfg) == [("ema", 0.0, 0.99)]
    with pytest.raises(ValueError, match=r"TrainConfig lacks: \['batch'\]"):
        config_differences({**record, "batch": 64}, cfg)
    with pytest.raises(TypeError, match="TrainConfig or a config dict"):
        config_differences([("lr", 0.1)], cfg)


def test_speed_settings_and_the_seed_are_ignored_unless_asked():
    base = TrainConfig()
    fast = replace(base, compile=True, channels_last=True, eval_every=5, seed=3, device="cpu")
    assert config_differences(base, fast) == []
    assert {f for f, _, _ in config_differences(base, fast, ignore=())} == set(NOT_RECIPE)
    # precision changes the arithmetic: it is a difference of recipe
    assert config_differences(base, replace(base, precision="bf16")) == [
        ("precision", "auto", "bf16")
    ]
    with pytest.raises(ValueError, match=r"ignore names no TrainConfig field: \['sed'\]"):
        config_differences(base, fast, ignore=("sed",))


def test_the_paper_recipe_is_section_4_2():
    p = PAPER_RECIPE
    assert (p.batch_size, p.lr, p.momentum, p.nesterov, p.weight_decay) == (
        128,
        0.1,
        0.9,
        False,
        1e-4,
    )
    assert (p.optimizer, p.schedule, p.warmup, p.label_smoothing) == ("sgd", "paper", 0, 0)
    assert (p.tta, p.crop_pad, p.flip, p.precision) == (False, 4, True, "fp32")
    assert (p.ema, p.bn_bias_lr, p.bn_weight_decay, p.low_res) == (0, 1, True, 0)
    validation = EXPERIMENTS["gpu_resnet20"].validation
    assert validation == 5000, "the paper's 45k/5k split"
    steps = (50_000 - validation) // p.batch_size  # the loader drops the last partial batch
    total = p.epochs * steps
    assert abs(total - 64_000) < steps, "64k iterations, to the nearest epoch"

    def lr(it):
        return p.lr * lr_factor(p, it, total, steps)

    # divided by 10 at 32k and 48k iterations, to within the rounding of 64k to whole epochs
    assert lr(31_800) == pytest.approx(0.1) and lr(32_200) == pytest.approx(0.01)
    assert lr(47_800) == pytest.approx(0.01) and lr(48_200) == pytest.approx(0.001)


def test_gpu_resnet20_is_the_paper_recipe_in_the_hardwares_arithmetic():
    assert config_differences(PAPER_RECIPE, EXPERIMENTS["gpu_resnet20"].config) == [
        ("precision", "fp32", "auto")
    ]


def test_the_recorded_cpu_recipe_differs_from_the_paper_as_its_definition_does():
    """What chapter 5 lists from the records is what the experiment defines."""
    seeds = load_results("cpu_resnet20").get("cpu_resnet20", [])
    assert seeds, "results/ holds the cpu_resnet20 records"
    want = config_differences(PAPER_RECIPE, EXPERIMENTS["cpu_resnet20"].config)
    for h in seeds:
        assert config_differences(PAPER_RECIPE, h.meta["config"]) == want
    assert {f for f, _, _ in want} >= {"tta", "label_smoothing", "weight_decay", "nesterov"}


def test_the_jpeg_note_quotes_its_numbers():
    """The JPEG copy's effect on published weights is documented in results/, and the numbers
    the chapter prints from it are the ones its quoted source states."""
    note = load_note("cifar10_jpeg_copy")
    assert note is not None, "results/cifar10_jpeg_copy.json is missing"
    quote = note["quote"]
    for key in ("official_test_acc_percent", "jpeg_test_acc_percent"):
        low, high = note[key]
        assert low < high and f"{low}-{high}%" in quote, (key, quote)
    assert note["jpeg_test_acc_percent"][1] < note["official_test_acc_percent"][0]
    assert load_note("no_such_note") is None


# ---------------------------------------------------------------- chapter 5 and its appendix


def _run(acc=None, *, data="", config=None, seconds=(), name="x"):
    epochs = [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds or (1.0,))]
    if acc is not None:
        epochs[-1]["test_acc"] = acc
    return History(epochs=epochs, meta={"data": data, "config": config or {}, "experiment": name})


def test_standard_error_of_a_difference_is_the_root_of_the_summed_variances():
    assert standard_error(0.3, 3, 0.4, 4) == pytest.approx(math.sqrt(0.09 / 3 + 0.16 / 4))
    assert math.isnan(standard_error(0.3, 1, 0.4, 4))  # one run: no spread
    assert math.isnan(standard_error(0.3, 3, 0.4, 1))
    # compare judges by it: beyond 2 SE is a verdict, within it noise
    se = standard_error(0.01, 3, 0.01, 3)
    near = compare({"a": (0.5, 0.01, 3), "b": (0.5 + 1.9 * se, 0.01, 3)})["b"]
    far = compare({"a": (0.5, 0.01, 3), "b": (0.5 - 2.1 * se, 0.01, 3)})["b"]
    assert (near["verdict"], far["verdict"]) == ("within noise", "worse")
    assert near["se"] == pytest.approx(se)


def test_data_copy_names_the_copy_the_records_say():
    jpeg, official = _run(data="CIFAR-10 JPEG archives"), _run(data="torchvision batches")
    assert data_copy([jpeg, jpeg]) == "JPEG copy"
    assert data_copy([official]) == "official data"
    assert data_copy([jpeg, official]) == "mixed data"
    assert data_copy([]) == "no data"


def test_recorded_model_loads_the_shipped_weights_and_none_where_none_are_kept():
    net = recorded_model("degradation/resnet20")
    assert net is not None and model_name(net) == "resnet20"
    again = build_model("resnet20")
    load_checkpoint(record_weights("degradation/resnet20"), again)
    x = torch.randn(2, 3, 32, 32)
    net.eval(), again.eval()
    assert torch.equal(net(x), again(x))  # the recorded weights, not fresh ones
    assert not torch.equal(net(x), build_model("resnet20").eval()(x))
    assert recorded_model("cpu_speedrun") is None  # no keep_weights: no weights recorded
    with pytest.raises(ValueError, match="unknown experiment 'resnet20'"):
        recorded_model("resnet20")


def test_format_differences_is_a_table_of_the_rows():
    table = format_differences([("lr", 0.1, 0.2), ("tta", False, True)], "paper", "ours")
    head, lr, tta = table.splitlines()
    assert head.split() == ["field", "paper", "ours"]
    assert lr.split() == ["lr", "0.1", "0.2"] and tta.split() == ["tta", "False", "True"]


def test_ablation_runs_put_the_baseline_first_and_name_each_by_its_change():
    notes = []
    runs = ablation_runs(notes=notes)
    assert next(iter(runs)) == ABLATION_BASELINE
    assert runs[ABLATION_BASELINE] == load_results("degradation/resnet20")["degradation/resnet20"]
    others = list(runs)[1:]
    assert others and not any(k.startswith("ablation of") for k in others)
    recorded = load_results("ablation")
    seeds = sorted(len(hs) for k, hs in runs.items() if k != ABLATION_BASELINE)
    assert seeds == sorted(map(len, recorded.values()))
    assert all(hs for hs in runs.values())


def test_format_verdicts_prints_points_and_twice_the_standard_error():
    verdicts = compare({"a": (0.5, 0.01, 3), "bb": (0.48, 0.01, 3), "c": (0.6, 0.01, 3)})
    lines = format_verdicts(verdicts).splitlines()
    assert lines[0].startswith("bb  -2.0 points (worse; 2 SE ")  # names padded alike
    assert lines[0].endswith(f"{200 * verdicts['bb']['se']:.1f})")
    assert lines[1].startswith("c  +10.0 points (better; 2 SE")
    # a line over the width: the numbers go under the name, and every line fits
    narrow = format_verdicts(verdicts, width=30).splitlines()
    assert narrow[:2] == ["bb", "    " + lines[0][3:]]
    assert max(map(len, format_verdicts(verdicts, width=40).splitlines())) <= 40


def test_paper_protocol_counts_the_papers_iterations_on_its_split():
    line = paper_protocol()
    assert "45,000/5,000 train/validation split" in line and "one view" in line
    iterations = int(line.split(" = ")[1].split()[0].replace(",", ""))
    assert abs(iterations - 64_000) < 351  # 64k, to the nearest epoch of 351 batches
    assert "40,000/5,000" in paper_protocol(45_000)


def test_final_errors_are_the_accuracys_complement_in_percent():
    runs = {"a": [_run(0.9), _run(0.7)], "b": [_run(0.5)]}
    errors = final_errors(runs, "test_acc")
    (m, sd, n), (mb, sdb, nb) = errors["a"], errors["b"]
    assert (m, n) == (pytest.approx(20.0), 2) and sd == pytest.approx(100 * math.sqrt(0.02))
    assert (mb, sdb, nb) == (pytest.approx(50.0), 0.0, 1)
    lines = format_errors(errors, "final test error").splitlines()
    assert lines[0].split() == ["a", "final", "test", "error", "20.0", "±", "14.1%", "(2", "seeds)"]
    assert lines[1].endswith("50.0 ± 0.0%  (1 seed)")


def test_load_sweep_names_the_runs_without_the_sweeps_folder():
    notes = []
    sweep = load_sweep("degradation", notes=notes)
    full = load_results("degradation", notes=[])
    assert sorted(sweep) == sorted(name.split("/")[1] for name in full)
    assert {"plain20", "plain56", "resnet20", "resnet56"} <= set(sweep)
    assert sweep["plain20"] == full["degradation/plain20"]


# ---------------------------------------------------------------- bad records (issue 29)


def test_a_sweep_summary_skips_a_bad_record_and_says_so(tmp_path):
    """A test_acc of NaN used to vanish from the mean without a word, and one of 7.5 made it
    411%."""
    folder = tmp_path / "degradation"
    for seed, acc in enumerate((0.5, 0.7, float("nan"), 7.5)):
        epochs = [{"epoch": 1, "seconds": 1.0, "test_acc": acc}]
        meta = {"experiment": "degradation/plain20", "seed": seed}
        (folder / f"plain20-seed{seed}.json").parent.mkdir(exist_ok=True)
        (folder / f"plain20-seed{seed}.json").write_text(
            json.dumps({"meta": meta, "epochs": epochs})
        )
    notes: list[str] = []
    runs = load_results("degradation/plain20", tmp_path, notes=notes)
    assert summarize(runs)["degradation/plain20"] == pytest.approx((0.6, 0.1414, 2), abs=1e-4)
    assert len(notes) == 2
    assert "plain20-seed2.json" in notes[0] and "test_acc nan is not a fraction" in notes[0]
    assert "plain20-seed3.json" in notes[1] and "test_acc 7.5 is not a fraction" in notes[1]


def test_a_mean_never_drops_a_nan_silently():
    assert mean_sd([0.5, None, 0.7])[2] == 2  # None: not measured
    with pytest.raises(ValueError, match="not a finite number"):
        mean_sd([0.5, float("nan"), 0.7])


def test_a_damaged_transfer_run_is_skipped_with_a_note(tmp_path):
    good = {"method": "scratch", "labels_per_class": 10, "seed": 0, "test_acc": 0.5}
    good["protocol"] = PROTOCOL
    bad = [
        {**good, "seed": 1, "test_acc": 7.5},
        {**good, "seed": 2, "test_acc": float("nan")},
        {**good, "seed": 3, "test_loss": float("nan")},
        {**good, "seed": 4, "method": "finetuen"},
    ]
    (tmp_path / "transfer.json").write_text(json.dumps([good, *bad]))
    notes: list[str] = []
    runs, _ = load_transfer(tmp_path, notes=notes)
    assert runs == [good]
    assert transfer_summary(runs) == {("scratch", 10): (0.5, 0.0, 1)}
    assert len(notes) == 4 and all(n.startswith("skipped a run of transfer.json:") for n in notes)
    assert "test_acc 7.5 is not a fraction" in notes[0] and "unknown method" in notes[3]


def test_luck_beyond_is_students_t():
    """The closed forms of t's two-sided tail at 2 and 4 degrees of freedom (2 and 3 seeds a
    side), and the normal curve's 4.6% as the seeds grow (erratum O1: not "rarely")."""
    assert luck_beyond(2, 2) == pytest.approx(1 - 2 / math.sqrt(6), abs=1e-9)
    x = 2 / math.sqrt(8)  # df = 4: P(|t| > c) = 1 - x (3 - x^2) / 2, x = c / sqrt(c^2 + 4)
    assert luck_beyond(2, 3) == pytest.approx(1 - x * (3 - x * x) / 2, abs=1e-9)
    assert luck_beyond(2, 10_000) == pytest.approx(math.erfc(2 / math.sqrt(2)), abs=1e-4)
    with pytest.raises(ValueError, match="seeds must be >= 2"):
        luck_beyond(2, 1)
