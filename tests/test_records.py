"""Where records are read and written (resnet_lab.lab.records), in a checkout and installed, and
what the wheel ships."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import resnet_lab.lab.records as records
from resnet_lab.checkpoints import History
from resnet_lab.lab.experiments import result_path
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


def test_a_checkout_reads_and_writes_its_results_folder(monkeypatch):
    monkeypatch.delenv(records.ENV, raising=False)
    assert records.checkout_results() == ROOT / "results"
    assert records.results_dir() == records.own_results_dir() == ROOT / "results"
    assert records.record_dirs() == [ROOT / "results"]


def test_the_environment_variable_overrides_both(tmp_path, monkeypatch, installed):
    monkeypatch.setenv(records.ENV, str(tmp_path / "mine"))
    assert records.results_dir() == records.own_results_dir() == tmp_path / "mine"
    assert result_path("degradation/plain20", 1) == tmp_path / "mine/degradation/plain20-seed1.json"


def test_installed_reads_the_shipped_records_and_writes_beside_them(installed):
    shipped, own = installed
    assert records.checkout_results() is None
    assert records.results_dir() == shipped and records.record_dirs() == [shipped]
    assert records.own_results_dir() == own  # never inside the package
    assert result_path("degradation/plain20", 0).parent == own / "degradation"
    assert transfer_paths()[0] == own / "finetune.json"


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
    (shipped / "finetune").mkdir()
    (shipped / "finetune.json").write_text(json.dumps([run, {**run, "seed": 1}]))
    (shipped / "finetune" / "pretrained.pt").write_bytes(b"book")
    assert load_transfer(notes=[]) == (
        [run, {**run, "seed": 1}],
        shipped / "finetune/pretrained.pt",
    )
    own.mkdir(parents=True)
    (own / "finetune.json").write_text(json.dumps([{**run, "test_acc": 0.7}]))
    notes: list[str] = []
    runs, weights = load_transfer(notes=notes)
    assert [r["test_acc"] for r in runs] == [0.7, 0.5]
    assert weights == shipped / "finetune/pretrained.pt"
    assert notes == [f"your own runs: 1 transfer runs from {own / 'finetune.json'}"]


def test_load_transfer_skips_a_damaged_file_with_a_note(installed):
    shipped, _ = installed
    (shipped / "finetune.json").write_text("{not json")
    notes: list[str] = []
    assert load_transfer(notes=notes) == ([], None)
    assert len(notes) == 1 and notes[0].startswith("skipped finetune.json:")


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


PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]


def _pip_wheel(source: Path, into: Path) -> Path:
    """``pip wheel`` of ``source`` (a tree or an unpacked sdist) into ``into``: the wheel."""
    subprocess.run(
        [*PIP_WHEEL, "-w", str(into), str(source)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(source / "build", ignore_errors=True)  # setuptools' work folder
    (wheel,) = into.glob("resnet_lab-*.whl")
    return wheel


def _contents(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.fixture(scope="module")
def tree_wheel(tmp_path_factory) -> Path:
    """The wheel built from the checkout, as `pip wheel .` builds it."""
    return _pip_wheel(ROOT, tmp_path_factory.mktemp("tree-wheel"))


def test_the_wheel_ships_every_record_and_only_the_weights_the_book_loads(tree_wheel):
    contents = _contents(tree_wheel)
    prefix = "resnet_lab/_results/"
    shipped = {n.removeprefix(prefix): b for n, b in contents.items() if n.startswith(prefix)}
    results = ROOT / "results"
    want = {str(p.relative_to(results)) for p in results.rglob("*.json")} | set(
        records.SHIPPED_WEIGHTS
    )
    assert set(shipped) == want
    assert all(shipped[n] == (results / n).read_bytes() for n in want)  # the same bytes


def test_manifest_in_lists_the_shipped_weights():
    """setup.py copies SHIPPED_WEIGHTS into the wheel, so the sdist must carry each of them:
    MANIFEST.in names exactly those weights (it once left out cpu_resnet20-seed0.pt)."""
    lines = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    weights = [w for line in lines if line.startswith("include ") for w in line.split()[1:]]
    weights = sorted(w.removeprefix("results/") for w in weights if w.endswith(".pt"))
    assert weights == sorted(records.SHIPPED_WEIGHTS), "MANIFEST.in: one `include` per weight"


def test_the_sdist_builds_the_same_wheel_as_the_tree(tree_wheel, tmp_path):
    """What pip does with the source distribution: unpack it, build a wheel. That wheel holds
    the same files, byte for byte, as the wheel built from the checkout."""
    build_sdist = "import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", build_sdist, str(tmp_path / "sdist")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (sdist,) = (tmp_path / "sdist").glob("resnet_lab-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (tree,) = (tmp_path / "unpacked").iterdir()
    from_sdist = _contents(_pip_wheel(tree, tmp_path / "wheel"))
    from_tree = _contents(tree_wheel)
    assert sorted(from_sdist) == sorted(from_tree)
    assert [n for n in from_tree if from_sdist[n] != from_tree[n]] == []


def _readme_figures(text: str) -> dict[str, object]:
    """The figures README.md's "What the wheel holds" states, as the build checks them."""
    patterns = {
        "megabytes": r"builds `resnet_lab-[^`]+\.whl`, about ([\d.]+) MB",
        "modules": r"the package's (\d+) modules",
        "records": r"every JSON record of `results/`: (\d+) files",
        "weights": r"(\d+) of the (\d+) recorded weights",
    }
    # a line may break anywhere a space is
    found = {k: re.search(p.replace(" ", r"\s+"), text) for k, p in patterns.items()}
    missing = [k for k, m in found.items() if m is None]
    assert not missing, f"README.md no longer states the wheel's {missing}"
    return {k: m.groups() if k == "weights" else m.group(1) for k, m in found.items()}


def test_the_readme_states_the_wheels_figures_as_built(tree_wheel):
    """The README's (and the records appendix's) size and counts are the wheel's, not typed once."""
    names = list(_contents(tree_wheel))
    stated = _readme_figures((ROOT / "README.md").read_text(encoding="utf-8"))
    size = f"{tree_wheel.stat().st_size / 1e6:.1f}"
    assert stated["megabytes"] == size, f"the wheel is {size} MB"
    assert f"about {size} MB" in (ROOT / "book" / "appendix_records.md").read_text("utf-8")
    modules = sum(n.endswith(".py") for n in names)
    assert stated["modules"] == str(modules), f"the wheel holds {modules} modules"
    jsons = sum(n.startswith("resnet_lab/_results/") and n.endswith(".json") for n in names)
    assert stated["records"] == str(jsons), f"the wheel holds {jsons} JSON records"
    tracked = ["git", "ls-files", "results/*.pt", "results/**/*.pt"]
    all_weights = set(
        subprocess.run(tracked, cwd=ROOT, capture_output=True, text=True).stdout.split()
    )
    want = (str(len(records.SHIPPED_WEIGHTS)), str(len(all_weights)))
    assert stated["weights"] == want, f"{want[0]} of the {want[1]} recorded weights ship"


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
