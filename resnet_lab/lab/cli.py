"""Command line: ``python -m resnet_lab train | evaluate | experiment ...``.

    python -m resnet_lab train --model resnet20 --epochs 30 --data auto --out runs/resnet20
    python -m resnet_lab evaluate --checkpoint runs/resnet20/checkpoint.pt
    python -m resnet_lab experiment degradation          # a sweep: every model x seed
    python -m resnet_lab experiment transfer             # chapter 8's transfer study
    torchrun --nproc_per_node 2 -m resnet_lab train --model resnet20 --out runs/ddp

Expected errors (bad data, a checkpoint of another model, a bad setting, an unknown model) print
one line and exit with status 2; ``--debug`` shows the traceback. Ctrl-C saves what is finished
and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path

from torch import nn

from resnet_lab.checkpoints import CheckpointMismatch, load_checkpoint
from resnet_lab.cifar10 import DataError, load_cifar10
from resnet_lab.config import TrainConfig
from resnet_lab.device import pick_device
from resnet_lab.distributed import distributed_setup
from resnet_lab.evaluation import evaluate
from resnet_lab.lab.experiments import run_name, run_sweep, sweep_status
from resnet_lab.lab.names import build_model, check_model_name
from resnet_lab.lab.records import book_results_to_write, own_results_dir
from resnet_lab.lab.runfolder import RunLockedError, train_in_folder
from resnet_lab.lab.transfer import (
    TRANSFER,
    run_transfer_study,
    transfer_paths,
    transfer_status,
    transfer_summary,
)
from resnet_lab.loader import CifarLoader
from resnet_lab.train import seed_everything

TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
MAX_SEED = 2**32 - 1


def parse_bool(text: str) -> bool:
    """true/false, yes/no, 1/0, on/off (any case); anything else is an error."""
    t = text.strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false (or yes/no, 1/0), got {text!r}")


def _bool_or(*words):
    def parse(text: str):
        return text if text in words else parse_bool(text)

    parse.__name__ = "true/false/" + "/".join(words)
    return parse


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"backbone\": 0.1}}', got {text!r}"
        ) from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _seeds(text: str) -> list[int]:
    """Seeds like ``0,1,2``: at least one, none negative, none twice."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from e
    if not seeds:
        raise argparse.ArgumentTypeError(
            f"no seeds in {text!r}: give some, like 0,1,2, "
            "or leave --seeds out for the experiment's own"
        )
    if min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and 0 or more, got {text!r}")
    if max(seeds) > MAX_SEED:  # TrainConfig.seed's rule: no run could use it
        raise argparse.ArgumentTypeError(
            f"seeds must be at most {MAX_SEED} (2**32 - 1, TrainConfig.seed), got {max(seeds)}"
        )
    return seeds


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="auto",
        help="CIFAR-10 root folder, or 'auto' ($RESNET_LAB_DATA, else download)",
    )
    p.add_argument(
        "--subset", type=int, default=None, help="class-balanced subset of the training set"
    )
    p.add_argument(
        "--test-subset", type=int, default=None, help="class-balanced subset of the test set"
    )
    p.add_argument(
        "--no-download", action="store_true", help="never download; fail if no local copy"
    )


def _load_data(args):

    root = None if args.data == "auto" else args.data
    return load_cifar10(
        root, download=not args.no_download, subset=args.subset, test_subset=args.test_subset
    )


SPECIAL_TYPES = {
    "channels_last": _bool_or("auto"),
    "flip": _bool_or("alternate"),
    "compile": _bool_or("default", "reduce-overhead", "max-autotune"),
    "lr_scales": _json_dict,
}


def _config_args(p: argparse.ArgumentParser) -> None:

    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()
        if f.name in SPECIAL_TYPES:
            kind = SPECIAL_TYPES[f.name]
        elif isinstance(default, bool):  # --tta alone means --tta true, as for evaluate
            p.add_argument(
                flag,
                type=parse_bool,
                nargs="?",
                const=True,
                default=None,
                help=f"true or false; alone: true (default {default})",
            )
            continue
        else:
            kind = type(default)
        p.add_argument(flag, type=kind, default=None, help=f"(default {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="train a model on CIFAR-10")
    p_train.add_argument("--model", default="resnet20", help="e.g. resnet20, plain56, resnet18")
    p_train.add_argument("--out", default=None, help="folder for checkpoint.pt and history.json")
    p_train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p_train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p_train.add_argument("--no-progress", action="store_true")
    _add_data_args(p_train)
    _config_args(p_train)

    p_eval = sub.add_parser("evaluate", help="test accuracy of a saved checkpoint")
    p_eval.add_argument("--checkpoint", required=True)
    p_eval.add_argument(
        "--tta",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="flip test-time augmentation: true or false; alone: true",
    )
    _add_data_args(p_eval)

    _experiment_args(sub)
    return parser


def _experiment_args(sub) -> None:
    """The ``experiment`` command's arguments."""
    p_exp = sub.add_parser(
        "experiment",
        help="run a named experiment or sweep, recording each run as <name>-seed<k>.json in "
        "your results folder ('transfer': chapter 8's transfer study, transfer.json)",
    )
    p_exp.add_argument("name")
    p_exp.add_argument(
        "--seeds",
        type=_seeds,
        default=None,
        help="seeds to run, e.g. 0,1,2 (default: the experiment's)",
    )
    where = p_exp.add_mutually_exclusive_group()
    where.add_argument(
        "--results-dir",
        default=None,
        help="the results folder where the records are read and written (default: yours, "
        "$RESNET_LAB_RESULTS or ~/.local/share/resnet-lab/results; see resnet_lab.lab.records)",
    )
    where.add_argument(
        "--into-book-results",
        action="store_true",
        help="for the book's maintainers: record into the checkout's results/, the book's "
        "records, instead of your own folder",
    )
    p_exp.add_argument("--runs-dir", default="runs", help="where the run folders go")
    p_exp.add_argument("--no-progress", action="store_true")
    p_exp.add_argument(
        "--list", action="store_true", help="list the runs and whether they are recorded"
    )
    p_exp.add_argument(
        "--cpu-shared",
        default=None,
        metavar="NOTE",
        help="transfer only: a line kept in each run's meta (cpu_shared), saying that other "
        "jobs shared the machine, so that its minutes are not taken for clean timings",
    )


def _train(args) -> int:

    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if getattr(args, f.name) is not None
    }
    cfg = TrainConfig(**overrides)  # a bad setting fails here, before any data is read
    check_model_name(args.model)  # an unknown model fails before the data is loaded
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out, the folder of the run to continue")
    if args.out is not None and not args.out.strip():
        raise ValueError("--out is empty: name the run's folder, e.g. --out runs/resnet20")
    pick_device(cfg.device)  # a device this machine lacks fails before the data is loaded
    distributed_setup(cfg.device)  # so does a bad WORLD_SIZE; under torchrun: join the others
    data = _load_data(args)
    print(f"data: {data.describe()}")
    seed_everything(cfg.seed)  # before the model is built: the seed fixes the starting weights
    model = build_model(args.model)
    head = _head_classes(model)
    if head is not None and head != len(data.classes):  # e.g. resnet18's 1000 ImageNet classes
        print(
            f"{args.model}: a {len(data.classes)}-class head for this data, in place of its "
            f"default {head} classes"
        )
        seed_everything(cfg.seed)
        model = build_model(args.model, num_classes=len(data.classes))
    history = train_in_folder(
        model,
        data,
        cfg,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    if history.interrupted:
        print(interrupted_line(history, args.out), file=sys.stderr)
        return 130
    print(history.summary())
    if args.out:
        print(f"checkpoint and history in {Path(args.out)}")
    return 0


def interrupted_line(history, out: str | None) -> str:
    """The last line after Ctrl-C: the epochs the checkpoint in ``out`` holds (not those that
    finished after it was last written), and how to go on."""
    saved = history.meta.get("saved_epochs", 0)
    if out is None:
        return f"interrupted after {len(history)} finished epochs; nothing was saved (no --out)"
    if saved:
        return (
            f"interrupted: {out} holds {saved} finished epochs; continue with --resume --out {out}"
        )
    return (
        f"interrupted before the first epoch was saved in {out}: nothing to resume; "
        "run the same command again"
    )


def _head_classes(model: nn.Module) -> int | None:
    """How many classes the model's last linear layer scores (None: it has none)."""
    heads = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return heads[-1] if heads else None


def _trained_classes(state: dict) -> list[str] | None:
    """The class names a checkpoint was trained on: its History's ``classes``, or for older
    records the ``classes: ...`` note of its data description; None when neither says."""
    meta = (state.get("history") or {}).get("meta", {})
    classes, data = meta.get("classes"), state.get("data") or meta.get("data")
    if isinstance(classes, list) and all(isinstance(c, str) for c in classes) and classes:
        return classes
    found = re.search(r"classes: ([^;)]*)", data if isinstance(data, str) else "")
    return [c.strip() for c in found.group(1).split(",")] if found else None


def _evaluate(args) -> int:

    state = load_checkpoint(args.checkpoint)
    build = state.get("build")
    if not build:  # weights saved before builds were recorded: rebuild by the model's name
        try:
            check_model_name(state["model_name"])
        except ValueError:
            raise ValueError(
                f"{args.checkpoint} does not record how to build its model "
                f"({state['model_name']}): build it in Python and use load_checkpoint"
            ) from None
        build = {"name": state["model_name"], "kwargs": {}}
    model = build_model(build["name"], **build["kwargs"])
    load_checkpoint(args.checkpoint, model)  # checks that the layers match
    data = _load_data(args)
    classes = _trained_classes(state)
    head = _head_classes(model)
    if classes is not None and list(classes) != list(data.classes):
        data = data.select_classes(classes)  # the classes it was trained on, in its label order
    elif head is not None and head < len(data.classes):  # a wider head scores the classes it has
        raise ValueError(
            f"{args.checkpoint} has a {head}-class head and does not record its classes: "
            "evaluate it in Python on the data it was trained on"
        )
    device = pick_device("auto")
    loader = CifarLoader(data.test_images, data.test_labels, 1000, train=False, device=device)
    loss, acc = evaluate(model.to(device), loader, tta=args.tta)
    print(
        f"{state['model_name']} after {state['epoch']} epochs: test loss {loss:.4f}, "
        f"test accuracy {100 * acc:.2f}% on {len(data.test_labels)} images of "
        f"{len(data.classes)} classes ({data.source})"
    )
    return 0


def _results_folder(args) -> str | Path | None:
    """The results folder the command records into: ``--results-dir``, the book's with
    ``--into-book-results``, else None (the reader's own, resnet_lab.lab.records)."""
    if args.results_dir == "":
        raise ValueError(
            "--results-dir is empty: name a folder, or leave it out for your own "
            f"({own_results_dir()})"
        )
    if args.into_book_results:
        return book_results_to_write()
    if args.list and args.results_dir and not Path(args.results_dir).is_dir():
        print(
            f"note: {args.results_dir} is not a folder: nothing is recorded there", file=sys.stderr
        )
    return args.results_dir


def _transfer(args, results: str | Path | None) -> int:
    """``experiment transfer``: the transfer study of chapter 8, listed or run."""
    study = TRANSFER if args.seeds is None else replace(TRANSFER, seeds=tuple(args.seeds))
    out, weights = transfer_paths(results)
    if args.list:
        state = "recorded" if weights.is_file() else "to run"
        print(f"{'pretraining':40s} {state} ({weights})")
        for method, budget, seed, done in transfer_status(study, out):
            print(
                f"{f'{method} {budget} labels/class seed {seed}':40s} "
                f"{'recorded' if done else 'to run'}"
            )
        return 0
    records = run_transfer_study(
        study,
        out=out,
        weights=weights,
        runs_dir=args.runs_dir,
        progress=not args.no_progress,
        cpu_shared=args.cpu_shared,
    )
    for (method, budget), (mean, sd, n) in transfer_summary(records).items():
        print(
            f"{method:15s} {budget:4d} labels/class: {100 * mean:5.1f} +- {100 * sd:.1f}% "
            f"test accuracy ({n} seeds)"
        )
    return 0


def _experiment(args) -> int:
    if args.name == "finetune":
        raise ValueError(
            "the transfer study of chapter 8 is called 'transfer' now: python -m resnet_lab "
            "experiment transfer (its records: transfer.json, transfer/pretrained.pt)"
        )
    results = _results_folder(args)
    if args.name == "transfer":
        return _transfer(args, results)
    if args.cpu_shared is not None:
        raise ValueError("--cpu-shared is kept only by the transfer study's records: leave it out")
    if args.list:
        for name, seed, state in sweep_status(args.name, args.seeds, results):
            print(f"{run_name(name, seed):40s} {state}")
        return 0
    done = run_sweep(
        args.name,
        seeds=args.seeds,
        results_dir=results,
        runs_dir=args.runs_dir,
        progress=not args.no_progress,
    )
    if done and done[-1].interrupted:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    expected = (
        DataError,
        CheckpointMismatch,
        ValueError,
        OSError,
        FloatingPointError,
        RunLockedError,
    )
    command = {"train": _train, "evaluate": _evaluate, "experiment": _experiment}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected as e:
        if args.debug:
            raise
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
