"""Issue 16, items 7, 8 and 9a: every experiment honours --list, --seeds and --results-dir, and a
record counts only when it is what its name says. New names are read through the module
(``ex.runs_to_do``) so that each test fails on its own on code without them."""

import json
import re
import shutil
from dataclasses import replace

import pytest

import resnet_lab.lab.experiments as ex
from resnet_lab.checkpoints import History
from resnet_lab.config import TrainConfig
from resnet_lab.lab.cli import main
from resnet_lab.lab.experiments import EXPERIMENTS, run_sweep
from resnet_lab.lab.results import load_results
from resnet_lab.lab.transfer import PROTOCOL, TRANSFER

FAST = dict(
    epochs=1, compile=False, precision="fp32", channels_last=False, device="cpu", batch_size=50
)


def _record(folder, name, k, epochs=15, **meta):
    """A finished record of ``epochs`` epochs at ``folder/<name>-seed<k>.json``."""
    h = History(
        epochs=[{"epoch": i + 1, "seconds": 1.0, "test_acc": 0.5} for i in range(epochs)], meta=meta
    )
    path = folder / f"{name}-seed{k}.json"
    h.save(path)
    return path


@pytest.fixture
def no_data(monkeypatch):
    """Loading CIFAR-10 fails the test: nothing may train (or download)."""

    def refuse(*args, **kwargs):
        raise AssertionError("load_cifar10 called: the command started training")

    for module in ("experiments", "transfer"):  # the two that load the data to train
        monkeypatch.setattr(f"resnet_lab.lab.{module}.load_cifar10", refuse)


@pytest.fixture
def tiny_study(tiny_data, monkeypatch):
    """The CLI's transfer study made tiny (resnet8, 2 steps) and trained on ``tiny_data``."""
    pre = TrainConfig(
        epochs=1, batch_size=20, lr=0.1, device="cpu", precision="fp32", channels_last=False
    )
    study = replace(
        TRANSFER,
        source=("airplane", "automobile", "bird", "cat", "deer", "dog"),
        target=("frog", "horse", "ship", "truck"),
        model="resnet8",
        pretrain=pre,
        budgets=(2,),
        methods=("scratch", "finetune"),
        seeds=(0, 1),
        steps=2,
        long_steps=3,
        batch_size=8,
        scratch_lrs=(0.1,),
        finetune_lrs=(0.02, 0.05),
    )
    monkeypatch.setattr("resnet_lab.lab.cli.TRANSFER", study)
    monkeypatch.setattr("resnet_lab.lab.transfer.load_cifar10", lambda *a, **k: tiny_data)
    return study


# ---------------------------------------------------------------------------- 7. finetune


def test_finetune_list_lists_the_study_in_results_dir_and_trains_nothing(tmp_path, no_data, capsys):
    rc = main(["experiment", "finetune", "--list", "--seeds", "1", "--results-dir", str(tmp_path)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pretraining") and "to run" in lines[0]
    assert str(tmp_path / "finetune" / "pretrained.pt") in lines[0]
    assert len(lines) == 1 + len(TRANSFER.methods) * len(TRANSFER.budgets)  # seed 1 only
    assert all(re.search(r"seed 1\s+to run$", line) for line in lines[1:])
    (tmp_path / "finetune").mkdir()
    (tmp_path / "finetune" / "pretrained.pt").write_bytes(b"")
    run = {"method": "scratch", "labels_per_class": 10, "seed": 1, "test_acc": 0.5}
    older = {**run, "seed": 2}  # the equal-step study's: no protocol, not counted
    (tmp_path / "finetune.json").write_text(json.dumps([{**run, "protocol": PROTOCOL}, older]))
    assert main(["experiment", "finetune", "--list", "--results-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "recorded" in lines[0]
    assert re.match(r"scratch 10 labels/class seed 1\s+recorded$", lines[2])
    assert re.match(r"scratch 10 labels/class seed 2\s+to run$", lines[3])
    assert sum("recorded" in line for line in lines) == 2


def test_finetune_keeps_its_pretraining_in_results_dir_and_runs_only_its_seeds(
    tiny_study, tmp_path
):
    res = tmp_path / "res"
    rc = main(
        [
            "experiment",
            "finetune",
            "--seeds",
            "1",
            "--results-dir",
            str(res),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-progress",
            "--cpu-shared",
            "other jobs ran beside it",
        ]
    )
    assert rc == 0
    assert (res / "finetune" / "pretrained.pt").is_file()
    assert (res / "finetune" / "pretrained.json").is_file()
    records = json.loads((res / "finetune.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in records) == [("finetune", 1), ("scratch", 1)]
    assert all(r["meta"]["cpu_shared"] == "other jobs ran beside it" for r in records)
    by = {r["method"]: r["selection"] for r in records}
    # scratch: one lr, then more steps at it; finetune: two lrs, then more steps at the best
    assert [(c["lr"], c["steps"]) for c in by["scratch"]["candidates"]] == [(0.1, 2), (0.1, 3)]
    assert len(by["finetune"]["candidates"]) == 3


def test_cpu_shared_is_refused_outside_the_finetune_study(tmp_path, no_data, capsys):
    rc = main(["experiment", "degradation", "--cpu-shared", "x", "--results-dir", str(tmp_path)])
    assert rc == 2
    assert "--cpu-shared is kept only by the finetune study's records" in capsys.readouterr().err


# ---------------------------------------------------------------------------- 8. records


def test_load_results_skips_files_not_named_as_records(tmp_path):
    folder = tmp_path / "degradation"
    _record(folder, "plain20", 0, experiment="degradation/plain20", seed=0)
    for stray in ("plain20-seed0-backup.json", "plain20-seed0 (copy).json", "plain20-seed01.json"):
        shutil.copy(folder / "plain20-seed0.json", folder / stray)
    notes: list[str] = []
    runs = load_results("degradation/plain20", tmp_path, notes=notes)
    assert len(runs["degradation/plain20"]) == 1
    assert len(notes) == 3 and all("not a record's name (plain20-seed<k>.json)" in n for n in notes)
    assert any("plain20-seed0 (copy).json" in n for n in notes)


def test_load_results_skips_a_record_whose_meta_names_another_run(tmp_path):
    folder = tmp_path / "degradation"
    _record(folder, "plain20", 0, experiment="degradation/plain20", seed=0)
    shutil.copy(folder / "plain20-seed0.json", folder / "plain20-seed5.json")  # a renamed copy
    _record(folder, "plain20", 1, experiment="degradation/resnet20", seed=1)
    _record(folder, "plain20", 2)  # a History saved by train() alone: nothing to check it by
    _record(folder, "plain20", 3, config={"seed": 3})
    notes: list[str] = []
    runs = load_results("degradation/plain20", tmp_path, notes=notes)
    assert len(runs["degradation/plain20"]) == 3  # seeds 0, 2 and 3
    assert notes == [
        "skipped plain20-seed1.json: it records degradation/resnet20 seed 1, "
        "not degradation/plain20 seed 1 as its name says",
        "skipped plain20-seed5.json: it records degradation/plain20 seed 0, "
        "not degradation/plain20 seed 5 as its name says",
    ]


def test_load_results_of_a_missing_folder_is_an_error_or_a_note(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no results folder .*resluts: check the path"):
        load_results("degradation", tmp_path / "resluts")
    monkeypatch.setenv("RESNET_LAB_RESULTS", str(tmp_path / "gone"))
    notes: list[str] = []
    assert load_results("degradation", notes=notes) == {}
    assert notes == [f"no results folder {tmp_path / 'gone'}: nothing is recorded"]


def test_every_shipped_record_still_loads():
    """Each file named <stem>-seed<k>.json in results/ loads, with no note: as many runs as the
    glob that load_results used before counts."""
    for name in EXPERIMENTS:
        folder = ex.result_path(name, 0).parent
        files = list(folder.glob(f"{name.rsplit('/', 1)[-1]}-seed*.json"))
        notes: list[str] = []
        runs = load_results(name, notes=notes).get(name, [])
        assert notes == [] and len(runs) == len(files), name
    total = sum(
        len(hs)
        for n in (
            "degradation",
            "ablation",
            "optimizer",
            "speedrun",
            "seeds",
            "cpu_speedrun",
            "cpu_speedrun_plus",
            "cpu_speedrun_plus_long",
        )
        for hs in load_results(n).values()
    )
    assert total >= 59  # the 59 records shipped when this test was written, all loaded before


def test_a_sweep_notices_deleted_weights_and_exports_or_trains_them_again(tiny_data, tmp_path):
    name, res, runs = "degradation/resnet20", tmp_path / "results", tmp_path / "runs"
    kw = dict(seeds=[0], results_dir=res, runs_dir=runs, progress=False, data=tiny_data, **FAST)
    run_sweep(name, **kw)
    record = res / "degradation" / "resnet20-seed0.json"
    weights, text = record.with_suffix(".pt"), record.read_text()
    weights.unlink()
    run_sweep(name, **kw)  # the finished checkpoint is still in runs/: exported again
    assert weights.is_file() and record.read_text() == text
    weights.unlink()
    assert ex.run_state(name, 0, res, epochs=1) == "to run (weights resnet20-seed0.pt missing)"
    shutil.rmtree(runs)
    assert len(run_sweep(name, **kw)) == 1 and weights.is_file()  # no checkpoint: trained again
    assert ex.run_state(name, 0, res, epochs=1) == "recorded"


def test_one_function_says_which_runs_are_still_to_do(tmp_path, capsys):
    folder = tmp_path / "degradation"
    _record(folder, "plain20", 0, experiment="degradation/plain20", seed=0)
    (folder / "plain20-seed0.pt").write_bytes(b"")  # plain20 keeps its weights beside the JSON
    _record(folder, "plain20", 1, epochs=3, experiment="degradation/plain20", seed=1)  # too short
    _record(folder, "resnet20", 0, experiment="degradation/resnet20", seed=0)  # no weights beside
    assert ex.runs_to_do("degradation", [0, 1], tmp_path) == [
        ("degradation/plain20", 1),
        ("degradation/plain56", 0),
        ("degradation/plain56", 1),
        ("degradation/resnet20", 0),
        ("degradation/resnet20", 1),
        ("degradation/resnet56", 0),
        ("degradation/resnet56", 1),
    ]
    assert ex.runs_to_do("degradation/plain20", [0, 1], tmp_path, epochs=3) == [
        ("degradation/plain20", 1)
    ]  # long enough now, but its weights are missing
    main(["experiment", "degradation", "--seeds", "0,1", "--results-dir", str(tmp_path), "--list"])
    listed = [
        line.split()[0]
        for line in capsys.readouterr().out.splitlines()
        if not line.endswith("recorded")
    ]
    assert listed == [ex.run_id(n, s) for n, s in ex.runs_to_do("degradation", [0, 1], tmp_path)]


# ---------------------------------------------------------------------------- 9a and the CLI


def test_seeds_must_be_some_distinct_non_negative_integers(no_data, capsys):
    for bad, why in (
        ("", "no seeds in ''"),
        (",", "no seeds in ','"),
        ("-1", "seeds must be distinct and 0 or more"),
        ("0,0", "seeds must be distinct and 0 or more"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["experiment", "degradation", f"--seeds={bad}"])
        assert e.value.code == 2
        assert why in capsys.readouterr().err


def test_a_results_dir_that_is_a_file_fails_before_any_training(
    tiny_data, tmp_path, no_data, monkeypatch, capsys
):
    file = tmp_path / "results.txt"
    file.write_text("not a folder")
    for name in ("degradation/plain20", "finetune"):
        rc = main(
            [
                "experiment",
                name,
                "--seeds",
                "0",
                "--results-dir",
                str(file),
                "--runs-dir",
                str(tmp_path / "runs"),
                "--no-progress",
            ]
        )
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"error: cannot write records to {file}")
        assert err.strip().endswith("choose another results folder (--results-dir)")
    assert main(["experiment", "degradation", "--results-dir", "", "--list"]) == 2
    assert "--results-dir is empty" in capsys.readouterr().err

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the results folder was checked")

    monkeypatch.setattr("resnet_lab.lab.experiments.train_in_folder", no_training)
    with pytest.raises(FileExistsError, match="results.txt is a file, not a folder"):
        run_sweep(
            "degradation/plain20",
            seeds=[0],
            results_dir=file,
            data=tiny_data,
            runs_dir=tmp_path / "runs",
            progress=False,
            **FAST,
        )
