"""resnet_lab.lab.transfer_records: the transfer study's records as chapter 8 and its appendix
read, print and check them."""

from dataclasses import replace

from resnet_lab.checkpoints import History
from resnet_lab.lab.transfer import TRANSFER, load_transfer, transfer_summary
from resnet_lab.lab.transfer_records import (
    chose_best,
    chosen_steps,
    comparison_tables,
    format_comparisons,
    format_grids,
    format_recipes,
    format_summary,
    recipe_text,
    runs_by_setting,
    transfer_caption,
)


def _record(method="scratch", budget=10, seed=0, acc=0.5, *, recipe=None, candidates=(), **meta):
    recipe = recipe or {"lr": 0.1, "steps": 250}
    by = "hold-out: 1 fold of 5 (8 images)" if candidates else "one candidate"
    return {
        "method": method,
        "labels_per_class": budget,
        "seed": seed,
        "test_acc": acc,
        "steps": 250,
        "recipe": recipe,
        "selection": {"by": by, "candidates": list(candidates)},
        "meta": {"minutes": 1.0, "hardware": "cpu", "commit": "abc", **meta},
    }


def test_caption_counts_runs_seeds_minutes_and_warns_of_a_shared_cpu():
    records = [_record(seed=0), _record(seed=1, cpu_shared="nice 10")]
    text = transfer_caption(records, None)
    assert text.startswith("Recorded in transfer.json: 2 runs, mean ± sd over 2 seeds;")
    assert "(see results/transfer/)" in text and "2 min in all" in text
    assert "(1 runs shared the CPU" in text and text.endswith("on cpu; commit abc.")
    long = {"model": "resnet20", "hardware": "Intel(R) Xeon(R) Platinum 8481C CPU, 2 threads"}
    pre = History(epochs=[{"epoch": 1, "seconds": 60.0, "test_acc": 0.8}], meta=long)
    assert "\n" in pre.summary()  # wrapped for the page ...
    alone = transfer_caption(records[:1], pre)
    assert "\n" not in alone and "shared the CPU" not in alone  # ... one line in a caption
    assert "(resnet20: test accuracy 80.00% after 1 epochs, 1.0 min of training on Intel" in alone


def test_summary_and_recipes_are_one_entry_per_setting_seeds_in_order():
    records = [
        _record(seed=1, recipe={"lr": 0.2, "steps": 500}),
        _record("linear_probe", 10, 0, recipe={"l2": 1e-3, "views": 8}),
        _record(seed=0),
    ]
    picks = runs_by_setting(records)
    assert list(picks) == [("linear_probe", 10), ("scratch", 10)]
    assert [r["seed"] for r in picks[("scratch", 10)]] == [0, 1]
    assert recipe_text(records[1]) == "L2 1e-03, 8 view(s)"
    text = format_recipes(picks)
    assert max(map(len, text.splitlines())) <= 77  # fits the page
    scratch = " ".join(text.split("\n", 1)[1].split())  # its entry, wrapped
    assert scratch.endswith("lr 0.1, 250 steps; lr 0.2, 500 steps (one candidate)")
    summary = format_summary(transfer_summary(records)).splitlines()
    assert summary[1] == "scratch           10/class:  50.0 ± 0.0%  (n=2)"


def test_chose_best_finds_a_recipe_that_is_not_the_best_candidate():
    scores = [
        {"lr": 0.05, "steps": 250, "val_acc": 0.5, "val_loss": 1.0},
        {"lr": 0.1, "steps": 250, "val_acc": 0.5, "val_loss": 0.9},  # the tie goes to it
        {"lr": 0.1, "steps": 500, "val_acc": 0.25, "val_loss": 0.1},
    ]
    assert chose_best(_record(recipe={"lr": 0.1, "steps": 250}, candidates=scores))
    assert not chose_best(_record(recipe={"lr": 0.05, "steps": 250}, candidates=scores))
    assert not chose_best(_record(recipe={"lr": 0.1, "steps": 500}, candidates=scores))
    assert chose_best(_record())  # one candidate: nothing scored, nothing to choose


def test_the_recorded_runs_each_trained_their_best_candidate():
    records, _ = load_transfer(notes=[])
    assert records and all(chose_best(r) for r in records)


def test_comparison_tables_judge_each_method_against_each_base_at_each_budget():
    summary = {
        ("scratch", 10): (0.40, 0.01, 3),
        ("finetune", 10): (0.60, 0.01, 3),
        ("scratch", 50): (0.60, 0.01, 3),
        ("finetune", 50): (0.59, 0.01, 3),
    }
    tables = comparison_tables(summary, ("scratch", "finetune"), ("scratch", "finetune"))
    assert tables["scratch"][10]["finetune"]["verdict"] == "better"
    assert tables["finetune"][10]["scratch"]["verdict"] == "worse"
    assert tables["scratch"][50]["finetune"]["verdict"] == "within noise"
    lines = format_comparisons(tables).splitlines()
    assert lines[0] == "minus scratch, points ± standard error of the difference:"
    assert lines[1] == "  10/class:"
    assert lines[2].startswith("    finetune        +20.0 ± 0.8 better")
    assert len(lines) == 10 and max(map(len, lines)) <= 77


def test_chosen_steps_are_the_schedules_of_one_method_by_budget():
    records = [
        _record(budget=10, recipe={"lr": 0.1, "steps": 250}),
        _record(budget=50, seed=1, recipe={"lr": 0.1, "steps": 500}),
        _record(budget=50, recipe={"lr": 0.2, "steps": 250}),
        _record("finetune", 10, recipe={"lr": 0.1, "steps": 999}),
    ]
    assert chosen_steps(runs_by_setting(records)) == {10: {250}, 50: {250, 500}}


def test_grids_say_what_each_method_chooses_from():
    text = " ".join(format_grids(TRANSFER).split())  # wrapped to the page: read as one text
    assert "L2 in 1e-05," in text and f"{TRANSFER.folds}-fold cross-validation" in text
    assert f"scratch: lr {TRANSFER.scratch_lrs} at {TRANSFER.steps} steps, then" in text
    assert "then" not in format_grids(replace(TRANSFER, long_steps=None))
