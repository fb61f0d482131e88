"""The processes the tests start: as a terminal starts them, and stopped where the test says.

- :func:`popen` and :func:`run` start a child with the default signal dispositions and an empty
  signal mask, whatever the test run inherited: under ``(trap '' INT; make test)``, nohup or a
  CI runner SIGINT is ignored, a child would inherit that, and Ctrl-C would do nothing to it.
- :func:`paused_env` makes a training run in the child (``python -m resnet_lab train``, a
  torchrun rank, the launcher's ranks) stop at the start of a chosen epoch, write
  ``ready-<rank>`` into a folder and wait there for the test's signal: the test interrupts at a
  point it controls, never in a race with a fast machine.
- torchrun is started with ``--standalone``: its rendezvous takes a free port (port 0), so two
  runs at once, or another program's port, never collide.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

# restored to SIG_DFL in every child before it starts
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
PAUSE_SECONDS = 300  # how long a paused run waits for the test's signal


def default_signals() -> None:
    """In the child, between fork and exec: the dispositions and mask a terminal gives."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def popen(cmd, **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, preexec_fn=default_signals, **kw)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, preexec_fn=default_signals, **kw)


# imported by every Python process that gets paused_env(): patches the trainer's epoch
SITECUSTOMIZE = f"""\
# written by tests/children.py: the trainer pauses at the start of one epoch
import os

if os.environ.get("RESNET_LAB_TEST_PAUSE_DIR"):
    import time
    from pathlib import Path

    import resnet_lab.train as _train

    _real = _train.train_one_epoch
    _at = int(os.environ["RESNET_LAB_TEST_PAUSE_AT"])
    _ready = Path(os.environ["RESNET_LAB_TEST_PAUSE_DIR"])

    def _paused(run, epoch, bar=None):
        if epoch == _at:
            rank = os.environ.get("RANK", "0")
            (_ready / f"ready-{{rank}}").write_text(str(os.getpid()))
            time.sleep({PAUSE_SECONDS})  # the test's signal ends this
            raise SystemExit("paused run: the test sent no signal within {PAUSE_SECONDS} s")
        return _real(run, epoch, bar)

    _train.train_one_epoch = _paused
"""


def paused_env(env: dict, folder: Path, at_epoch: int) -> dict:
    """``env`` for a child whose training waits for a signal at the start of epoch index
    ``at_epoch`` (so ``at_epoch`` epochs are finished and saved), after writing
    ``folder/ready-<rank>``."""
    hook = folder / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH", "")) if p)
    return {
        **env,
        "PYTHONPATH": path,
        "RESNET_LAB_TEST_PAUSE_DIR": str(folder),
        "RESNET_LAB_TEST_PAUSE_AT": str(at_epoch),
    }


def wait_until_ready(proc: subprocess.Popen, folder: Path, ranks: int = 1, timeout=240) -> None:
    """Block until every rank of ``proc``'s run has paused; fail if it ended first."""
    deadline = time.monotonic() + timeout
    want = [folder / f"ready-{r}" for r in range(ranks)]
    while not all(p.exists() for p in want):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended before it paused: {(err or out or '')[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run did not pause within {timeout} s")
        time.sleep(0.02)
