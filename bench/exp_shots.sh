#!/usr/bin/env bash
# Time `dvc exp run -S <param>` at a revision as a reviewer would meet it: a fresh worktree whose outputs come
# from this clone's DVC cache, then an empty cache, so no stage is restored from the run-cache.
#   bash bench/exp_shots.sh [REV] [SET]      # defaults: HEAD, shots=4; run after `dvc repro`, machine idle
# Prints the stages that ran, each stage's closing line and the wall time of `dvc exp run`.
set -euo pipefail
rev="${1:-HEAD}" set="${2:-shots=4}"
root="$(git rev-parse --show-toplevel)"
work="$(mktemp -d)"
trap 'git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$root" worktree add -f -q --detach "$work/tree" "$rev"
cd "$work/tree"
export PYTHONPATH="$work/tree/src"  # this revision's code, whatever the venv's editable install points at
dvc config --local cache.dir "$root/.dvc/cache" && dvc checkout -f -q
dvc config --local cache.dir "$work/cache" && dvc commit -q -f
start=$(date +%s.%N)
dvc exp run -S "$set" > "$work/run.log" 2>&1 || { cat "$work/run.log"; exit 1; }
end=$(date +%s.%N)
grep -E "^[a-z]+(@[0-9]+)?: wrote" "$work/run.log" | sed -E 's/: wrote .* in / /'
name="$(sed -nE 's/^Ran experiment\(s\): ([^ ,]+).*/\1/p' "$work/run.log")"
[ -n "$name" ] && dvc exp remove "$name" >/dev/null  # the experiment's ref lives in the shared repository
printf 'dvc exp run -S %s at %s: %.1f s\n' "$set" "$(git rev-parse --short HEAD)" "$(echo "$end - $start" | bc)"
