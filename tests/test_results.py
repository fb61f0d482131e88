"""resnet_lab.results: config_differences and the paper's recipe it compares with."""

from dataclasses import asdict, replace

import pytest

from resnet_lab.config import TrainConfig, lr_factor
from resnet_lab.experiments import EXPERIMENTS
from resnet_lab.results import (
    NOT_RECIPE,
    PAPER_RECIPE,
    config_differences,
    load_note,
    load_results,
)


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
