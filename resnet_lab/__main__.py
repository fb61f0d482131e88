"""Command line: ``python -m resnet_lab train | evaluate | experiment ...``.

    python -m resnet_lab train --model resnet20 --epochs 30 --data auto --out runs/resnet20
    python -m resnet_lab evaluate --checkpoint runs/resnet20/checkpoint.pt
    python -m resnet_lab experiment cpu_resnet20
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="auto",
                   help="CIFAR-10 root folder, or 'auto' ($RESNET_LAB_DATA, else download)")
    p.add_argument("--subset", type=int, default=None, help="class-balanced subset of the training set")
    p.add_argument("--test-subset", type=int, default=None, help="class-balanced subset of the test set")
    p.add_argument("--no-download", action="store_true", help="never download; fail if no local copy")


def _load_data(args):
    from resnet_lab.data import load_cifar10

    root = None if args.data == "auto" else args.data
    return load_cifar10(root, download=not args.no_download, subset=args.subset, test_subset=args.test_subset)


def _config_args(p: argparse.ArgumentParser) -> None:
    from resnet_lab.train import TrainConfig

    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None,
                           metavar="{true,false}", help=f"(default {default})")
        else:
            p.add_argument(flag, type=type(default), default=None, help=f"(default {default})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="train a model on CIFAR-10")
    p_train.add_argument("--model", default="resnet20", help="e.g. resnet20, plain56, speednet")
    p_train.add_argument("--out", default=None, help="folder for checkpoint.pt and history.json")
    p_train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p_train.add_argument("--no-progress", action="store_true")
    _add_data_args(p_train)
    _config_args(p_train)

    p_eval = sub.add_parser("evaluate", help="test accuracy of a saved checkpoint")
    p_eval.add_argument("--checkpoint", required=True)
    p_eval.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    _add_data_args(p_eval)

    p_exp = sub.add_parser("experiment", help="run a named experiment, writing results/<name>.json")
    p_exp.add_argument("name")
    p_exp.add_argument("--out", default=None)
    p_exp.add_argument("--runs-dir", default="runs")
    p_exp.add_argument("--no-progress", action="store_true")

    args = parser.parse_args(argv)

    if args.command == "train":
        from resnet_lab.models import build_model
        from resnet_lab.train import TrainConfig, train

        overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
        cfg = TrainConfig(**overrides)
        data = _load_data(args)
        print(f"data: {data.describe()}")
        model = build_model(args.model)
        history = train(model, data, cfg, progress=not args.no_progress, checkpoint_dir=args.out, resume=args.resume)
        print(history.summary())
        if args.out:
            print(f"checkpoint and history in {Path(args.out)}")
        return 0

    if args.command == "evaluate":
        from resnet_lab.data import CifarLoader, pick_device
        from resnet_lab.models import build_model
        from resnet_lab.train import evaluate, load_checkpoint

        state = load_checkpoint(args.checkpoint)
        name = state["model_name"].split(" ")[0]
        model = build_model(name)
        load_checkpoint(args.checkpoint, model)
        data = _load_data(args)
        device = pick_device("auto")
        loader = CifarLoader(data.test_images, data.test_labels, 1000, train=False, device=device)
        loss, acc = evaluate(model.to(device), loader, tta=args.tta)
        print(f"{state['model_name']} after {state['epoch']} epochs: test loss {loss:.4f}, "
              f"test accuracy {100 * acc:.2f}% on {len(data.test_labels)} images ({data.source})")
        return 0

    if args.command == "experiment":
        from resnet_lab.experiments import experiment_names, run_experiment

        names = experiment_names(args.name)
        if args.out and len(names) > 1:
            parser.error("--out names one file; a group of experiments writes results/<group>/<name>.json")
        for name in names:
            history = run_experiment(name, out=args.out, runs_dir=args.runs_dir, progress=not args.no_progress)
            print(history.summary(), flush=True)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
