"""Where records are read and written (resnet_lab.lab.records), in a checkout and installed, and
what the wheel ships."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import resnet_lab.lab.records as records
from resnet_lab.checkpoints import History
from resnet_lab.lab.experiments import record_path
from resnet_lab.lab.results import load_results, record_weights
from resnet_lab.lab.transfer import PROTOCOL, load_transfer, transfer_paths

ROOT = Path(__file__).resolve().parents[1]


def _record(folder: Path, name: str, seed: int, acc: float = 0.5) -> Path:
    h = History(
        epochs=[{"epoch": 1, "seconds": 1.0, "test_acc": acc}],
        meta={"experiment": name, "seed": seed},
    )
    path = folder / f"{name}-seed{seed}.json"
    h.save(path)
    return path


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The package as a wheel installs it: no checkout around it, records in _results, and the
    reader's data folder under tmp_path. Returns (shipped, own)."""
    package = tmp_path / "site-packages" / "resnet_lab"
    shipped = package / "_results"
    shipped.mkdir(parents=True)
    monkeypatch.setattr(records, "PACKAGE", package)
    monkeypatch.setattr(records, "SHIPPED", shipped)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv(records.ENV, raising=False)
    return shipped, tmp_path / "data" / "resnet-lab" / "results"


def test_a_checkout_reads_its_results_folder_and_writes_the_readers_own(tmp_path):
    """A clone's experiment never writes over the book's results/ (issue 27)."""
    own = tmp_path / "data" / "resnet-lab" / "results"  # XDG_DATA_HOME, set by conftest
    assert records.checkout_results() == ROOT / "results"
    assert records.results_dir() == ROOT / "results"
    assert records.own_results_dir() == own
    assert record_path("degradation/plain20", 1) == own / "degradation/plain20-seed1.json"
    assert transfer_paths()[0] == own / "transfer.json"
    assert records.record_dirs() == [ROOT / "results"]  # until the reader records a run
    own.mkdir(parents=True)
    assert records.record_dirs() == [ROOT / "results", own]
    assert records.book_results_to_write() == ROOT / "results"  # a maintainer's, on purpose


def test_the_environment_variable_names_the_readers_folder_never_the_books(
    tmp_path, monkeypatch, installed
):
    shipped, _ = installed
    _record(shipped, "degradation/plain20", 0)
    (tmp_path / "mine").mkdir()  # set to an empty folder: the book's records stay in view
    monkeypatch.setenv(records.ENV, str(tmp_path / "mine"))
    assert records.results_dir() == shipped
    assert records.own_results_dir() == tmp_path / "mine"
    assert record_path("degradation/plain20", 1) == tmp_path / "mine/degradation/plain20-seed1.json"
    assert records.record_dirs() == [shipped, tmp_path / "mine"]
    runs = load_results("degradation/plain20", notes=[])["degradation/plain20"]
    assert [h.meta["seed"] for h in runs] == [0]
    with pytest.raises(ValueError, match="--into-book-results records into a checkout's results/"):
        records.book_results_to_write()


@pytest.mark.parametrize("inside", ["", "mine"])
def test_the_environment_variable_never_names_the_books_folder(monkeypatch, inside):
    """RESNET_LAB_RESULTS=results used to make a reader's runs overwrite the book's records."""
    monkeypatch.setenv(records.ENV, str(ROOT / "results" / inside))
    with pytest.raises(ValueError, match="is the book's results folder .*--into-book-results"):
        records.own_results_dir()
    assert records.book_results_to_write() == ROOT / "results"


def test_installed_reads_the_shipped_records_and_writes_beside_them(installed):
    shipped, own = installed
    assert records.checkout_results() is None
    assert records.results_dir() == shipped and records.record_dirs() == [shipped]
    assert records.own_results_dir() == own  # never inside the package
    assert record_path("degradation/plain20", 0).parent == own / "degradation"
    assert transfer_paths()[0] == own / "transfer.json"


def test_the_readers_own_runs_are_read_beside_the_shipped_ones(installed):
    shipped, own = installed
    for seed in (0, 1):
        _record(shipped, "degradation/plain20", seed)
    _record(own, "degradation/plain20", 1, acc=0.9)  # replaces the book's seed 1
    _record(own, "degradation/plain20", 5, acc=0.8)  # adds a seed
    notes: list[str] = []
    runs = load_results("degradation/plain20", notes=notes)["degradation/plain20"]
    assert [h.meta["seed"] for h in runs] == [0, 1, 5]
    assert [h.final["test_acc"] for h in runs] == [0.5, 0.9, 0.8]
    assert notes == [
        f"your own runs: degradation/plain20 seed 1, 5 from {own}, in place of the book's seed 1"
    ]
    assert load_results("degradation/plain56", notes=notes) == {}


def test_record_weights_prefers_the_readers_own(installed):
    shipped, own = installed
    assert record_weights("degradation/resnet20") is None
    book = _record(shipped, "degradation/resnet20", 0).with_suffix(".pt")
    book.write_bytes(b"book")
    assert record_weights("degradation/resnet20", notes=[]) == book
    mine = own / "degradation" / "resnet20-seed0.pt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    notes: list[str] = []
    assert record_weights("degradation/resnet20", notes=notes) == mine
    assert notes == [f"your own weights: degradation/resnet20 from {mine}"]


def test_load_transfer_puts_the_readers_runs_in_place_of_the_books(installed):
    shipped, own = installed
    run = {"method": "scratch", "labels_per_class": 10, "seed": 0, "test_acc": 0.5}
    run["protocol"] = PROTOCOL
    (shipped / "transfer").mkdir()
    (shipped / "transfer.json").write_text(json.dumps([run, {**run, "seed": 1}]))
    (shipped / "transfer" / "pretrained.pt").write_bytes(b"book")
    assert load_transfer(notes=[]) == (
        [run, {**run, "seed": 1}],
        shipped / "transfer/pretrained.pt",
    )
    own.mkdir(parents=True)
    (own / "transfer.json").write_text(json.dumps([{**run, "test_acc": 0.7}]))
    notes: list[str] = []
    runs, weights = load_transfer(notes=notes)
    assert [r["test_acc"] for r in runs] == [0.7, 0.5]
    assert weights == shipped / "transfer/pretrained.pt"
    assert notes == [f"your own runs: 1 transfer runs from {own / 'transfer.json'}"]


def test_load_transfer_skips_a_damaged_file_with_a_note(installed):
    shipped, _ = installed
    (shipped / "transfer.json").write_text("{not json")
    notes: list[str] = []
    assert load_transfer(notes=notes) == ([], None)
    assert len(notes) == 1 and notes[0].startswith("skipped transfer.json:")


def test_a_readers_transfer_records_under_their_old_names_still_load(installed):
    """Before the study was called 'transfer', a reader's run wrote finetune.json and
    finetune/pretrained.pt: they still load, and a resumed study goes on appending to them."""
    _, own = installed
    run = {"method": "scratch", "labels_per_class": 10, "seed": 0, "test_acc": 0.5}
    run["protocol"] = PROTOCOL
    (own / "finetune").mkdir(parents=True)
    (own / "finetune.json").write_text(json.dumps([run]))
    (own / "finetune" / "pretrained.pt").write_bytes(b"mine")
    assert transfer_paths() == (own / "finetune.json", own / "finetune" / "pretrained.pt")
    assert load_transfer(notes=[]) == ([run], own / "finetune" / "pretrained.pt")
    (own / "transfer.json").write_text(json.dumps([]))  # the new name wins once it is there
    assert transfer_paths()[0] == own / "transfer.json"


def test_chapters_never_open_the_repositorys_files():
    """A chapter opened alone (Colab) has no repository beside it: records come from the
    package, never from ../results."""
    pages = [*(ROOT / "book").glob("[0-9][0-9]_*.md"), *(ROOT / "book").glob("appendix_*.md")]
    for chapter in sorted(pages):
        code = "\n".join(
            part.split("```", 1)[0]
            for part in chapter.read_text(encoding="utf-8").split("```{code-cell}")[1:]
        )
        for bad in ('"../', "'../", 'Path("results', "Path('results"):
            assert bad not in code, f"{chapter.name} opens {bad}...: read records via the package"


def test_the_wheel_ships_every_record_and_only_the_weights_the_book_loads(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("resnet_lab-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = {
            n.removeprefix("resnet_lab/_results/"): z.read(n)
            for n in z.namelist()
            if n.startswith("resnet_lab/_results/")
        }
    results = ROOT / "results"
    want = {str(p.relative_to(results)) for p in results.rglob("*.json")} | set(
        records.SHIPPED_WEIGHTS
    )
    assert set(shipped) == want
    assert all(shipped[n] == (results / n).read_bytes() for n in want)  # the same bytes
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' work folder


# ---------------------------------------------------------------- from the reliability issues


def test_load_results_skips_a_bad_file_with_a_note(tmp_path):
    folder = tmp_path / "degradation"
    h = History(epochs=[{"epoch": 1, "seconds": 1.0, "test_acc": 0.5}])
    h.save(folder / "plain20-seed0.json")
    (folder / "plain20-seed1.json").write_text("{ broken")
    notes: list[str] = []
    runs = load_results("degradation/plain20", tmp_path, notes=notes)
    assert len(runs["degradation/plain20"]) == 1
    assert len(notes) == 1 and "skipped plain20-seed1.json" in notes[0]


def test_git_commit_says_when_the_package_has_changes(monkeypatch):
    import subprocess

    from resnet_lab.lab import records as ckpt

    answers = {"rev-parse": "abc1234", "status": ""}

    def fake_run(args, **kwargs):
        return subprocess.CompletedProcess(args, 0, stdout=answers[args[1]] + "\n", stderr="")

    monkeypatch.setattr(ckpt.subprocess, "run", fake_run)
    assert ckpt.git_commit() == "abc1234"
    answers["status"] = " M resnet_lab/train.py"
    assert ckpt.git_commit() == "abc1234+changes"
    answers["rev-parse"] = ""
    assert ckpt.git_commit() is None
