#!/usr/bin/env bash
# The one prepared GPU check (issue 27): the CUDA tests, the embedding benchmark (both paths, both precisions,
# 224 px) and the paper-cost benchmark, then one table of what ran, in what time, against its budget.
# Within 8 minutes on one H100 (the budgets below add up to 7.5). Run from the repository root:
#
#   bash bench/gpu_check.sh            # on the GPU machine
#   bash bench/gpu_check.sh --dry-run  # anywhere: lists each step and its budget, runs nothing
#
# The GPU machine has no internet: Python packages it lacks (open_clip_torch, ftfy, wcwidth, pydantic and
# their needs) travel as wheels in .whl/ (git-ignored), downloaded beforehand on a machine with internet;
# the README's GPU section gives the command. They are installed into /tmp/site only when missing.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
LOGS=${OUT:-/tmp}/gpu_check
STEPS=(  # name | budget in seconds | command
  "wheels|20|install_wheels"
  "cuda tests|150|$PY -m pytest -q -m gpu -p no:cacheprovider tests/test_cuda.py tests/test_features.py tests/test_pretrain.py tests/test_probes.py"
  "embed ViT-B-32|75|$PY bench/embed_throughput.py --arch ViT-B-32 --n 4096 --device cuda"
  "embed RN50|75|$PY bench/embed_throughput.py --arch RN50 --n 4096 --device cuda"
  "paper cost|130|$PY bench/paper_cost.py --device cuda"
)

install_wheels() {
  if $PY -c "import open_clip, ftfy, wcwidth, pydantic" 2>/dev/null; then
    echo "open_clip, ftfy, wcwidth, pydantic: already installed"
  elif compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  else
    echo "missing packages and no wheels in .whl/ (README, GPU section)" && return 1
  fi
}

if [[ "${1:-}" == "--dry-run" ]]; then
  printf '%-16s %8s  %s\n' step budget command
  total=0
  for step in "${STEPS[@]}"; do
    IFS='|' read -r name budget command <<<"$step"
    printf '%-16s %7ss  %s\n' "$name" "$budget" "$command"
    total=$((total + budget))
  done
  printf '%-16s %7ss  (limit 480 s on one H100)\n' total "$total"
  exit 0
fi

export PYTHONPATH="/tmp/site:$PYTHONPATH"
mkdir -p "$LOGS"
rows=()
failed=0
for step in "${STEPS[@]}"; do
  IFS='|' read -r name budget command <<<"$step"
  log="$LOGS/${name// /_}.log"
  echo "== $name (budget ${budget} s): $command"
  start=$(date +%s)
  if [[ "$command" == install_wheels ]]; then
    install_wheels >"$log" 2>&1
  else
    timeout "$budget" bash -c "$command" >"$log" 2>&1
  fi
  rc=$?
  took=$(($(date +%s) - start))
  tail -n 25 "$log"
  status=ok
  ((rc == 124)) && status="over budget"
  ((rc != 0 && rc != 124)) && status="failed (exit $rc)"
  ((rc != 0)) && failed=1
  rows+=("$(printf '%-16s %7ss %7ss  %s' "$name" "$budget" "$took" "$status")")
done
echo
printf '%-16s %8s %8s  %s\n' step budget took status
printf '%s\n' "${rows[@]}"
echo "logs: $LOGS"
exit "$failed"
