#!/usr/bin/env bash
# GPU check (issue 11), at most about 8 minutes on one H100/H200-class GPU:
#   1. the package tests with CUDA visible;
#   2. every chapter executed in the `gpu` profile, each timed;
#   3. the throughput benchmark;
#   4. as much of the paper-schedule ResNet-20 (`gpu_resnet20`) as fits; resumable.
# Everything it prints goes to $OUT/gpu_check.log (OUT defaults to ./gpu_check_out).
# On a machine without CUDA it says so and exits 0: nothing here can be measured on a CPU.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
# Needs torch, torchvision, matplotlib, tqdm, pytest; chapters also need nbclient, ipykernel,
# ipywidgets and jupytext (install them from wheels on a machine without network).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: CUDA is not available here: tests, chapters, benchmark and gpu_resnet20 skipped."
  echo "gpu_check: run this script on a machine with a CUDA GPU to measure them."
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
t0=$(date +%s)
step() { echo; echo "=== $1 (at $(( $(date +%s) - t0 )) s)"; }

step "1. package tests with CUDA visible"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests -o addopts="" -x --ignore=tests/test_book.py \
  || echo "tests: exit $?"

step "2. chapters in the gpu profile"
if "$PY" -c "import nbclient, ipykernel, jupytext" 2>/dev/null; then
  for ch in book/0[1-7]_*.md; do
    s=$(date +%s)
    RESNET_LAB_PROFILE=gpu timeout 240 "$PY" - "$ch" <<'PYEOF'
import sys, jupytext, nbclient
from pathlib import Path
path = Path(sys.argv[1])
nb = jupytext.read(path)
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                        resources={"metadata": {"path": str(path.parent)}}).execute()
bad = [c for c in nb.cells if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))
       and "raises-exception" not in c.metadata.get("tags", [])]
print(f"{path.name}: {len(bad)} unexpected errors" + ("" if not bad else f": {bad[0].source[:200]!r}"))
PYEOF
    echo "$ch: exit $?, $(( $(date +%s) - s )) s"
  done
else
  echo "chapters skipped: nbclient, ipykernel or jupytext missing (bring them as wheels)"
fi

step "3. throughput benchmark"
timeout 120 "$PY" benchmarks/throughput.py --batch-size 256 --steps 100 --rounds 3 --workers 4 \
  || echo "benchmark: exit $?"

step "4. gpu_resnet20 (paper schedule), as much as fits"
left=$(( 480 - ($(date +%s) - t0) ))
if [ "$left" -gt 60 ]; then
  timeout --signal=INT "$left" "$PY" -m resnet_lab experiment gpu_resnet20 --no-progress --runs-dir "$OUT/runs"
  echo "gpu_resnet20: exit $? (130 or 124: stopped by the time limit; the same command resumes it)"
  cp -r "$OUT/runs/gpu_resnet20-seed0/history.json" "$OUT/gpu_resnet20_history.json" 2>/dev/null
else
  echo "gpu_resnet20 skipped: only $left s left"
fi
echo; echo "gpu_check finished in $(( $(date +%s) - t0 )) s"
