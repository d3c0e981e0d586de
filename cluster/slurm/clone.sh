# Sourced by the job scripts: the project at CLIPPROBE_REV in node-local scratch, installed (or CLIPPROBE_VENV's
# environment), its DVC cache the shared folder CLIPPROBE_CACHE (or its own, with CLIPPROBE_REMOTE as the remote).
work="${TMPDIR:-/tmp}/clipprobe-${SLURM_JOB_ID:-local}-$1"
git clone -q "$CLIPPROBE_GIT" "$work"
cd "$work"
git checkout -q "$CLIPPROBE_REV"
if [ -n "${CLIPPROBE_VENV:-}" ]; then  # an environment with the project installed already (editable: this clone's src first)
  . "$CLIPPROBE_VENV/bin/activate" && export PYTHONPATH="$PWD/src"
else
  python3 -m venv .venv && . .venv/bin/activate && pip install -q -e .
fi
if [ -n "${CLIPPROBE_CACHE:-}" ]; then
  dvc cache dir --local "$CLIPPROBE_CACHE"
  # a cache on a shared file system: link, never copy, and let the group write what any job wrote
  dvc config --local cache.type symlink
  dvc config --local cache.shared group
fi
if [ -n "${CLIPPROBE_REMOTE:-}" ]; then dvc remote add --local -d store "$CLIPPROBE_REMOTE"; fi
