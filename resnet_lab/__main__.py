"""``python -m resnet_lab``: the command line, which lives in the lab (:mod:`resnet_lab.lab.cli`).

An entry point, imported by nothing: it belongs to the lab's floor, not the core's.
"""

from resnet_lab.lab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
