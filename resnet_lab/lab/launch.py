"""``torchrun`` for resnet_lab, with the CLI's exit statuses and one-line messages.

    python -m resnet_lab.lab.launch --nproc-per-node 2 train --model resnet20 --out runs/ddp

takes torchrun's options before the resnet_lab command (``train``, ``evaluate``,
``experiment``) and runs ``torchrun OPTIONS -m resnet_lab COMMAND ...``. Plain torchrun works
too, but after Ctrl-C it prints its own traceback and exits 1; here Ctrl-C prints one line and
exits 130, as a single process does, and a failed rank exits with that rank's status (2 for the
CLI's one-line errors, printed above by the rank itself).
"""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

COMMANDS = ("train", "evaluate", "experiment")
INTERRUPTED = (130, -2, -15)  # a rank's own Ctrl-C exit, or killed by SIGINT / SIGTERM


def torchrun_args(argv: list[str]) -> list[str]:
    """``OPTIONS COMMAND ...`` -> torchrun's ``OPTIONS -m resnet_lab COMMAND ...``."""
    at = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if at is None:
        print(
            f"error: name a resnet_lab command ({', '.join(COMMANDS)}) after torchrun's "
            "options, e.g. --nproc-per-node 2 train --model resnet20 --out runs/ddp",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return [*argv[:at], "-m", "resnet_lab", *argv[at:]]


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(torchrun_args(sys.argv[1:] if argv is None else argv))
    resume = (
        "; run the same command with --resume to continue"
        if "--out" in args.training_script_args
        else ""
    )
    try:
        run(args)
    except SignalException as e:
        print(
            f"interrupted ({e.sigval.name}): the checkpoint holds every finished epoch{resume}",
            file=sys.stderr,
        )
        return 130
    except ChildFailedError as e:
        codes = sorted({f.exitcode for f in e.failures.values()})
        if all(c in INTERRUPTED for c in codes):
            print(
                f"interrupted: the checkpoint holds every finished epoch{resume}", file=sys.stderr
            )
            return 130
        rank, failure = min(e.failures.items())
        print(
            f"error: rank {rank} exited with status {failure.exitcode} (its message is above)",
            file=sys.stderr,
        )
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
