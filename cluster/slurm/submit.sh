#!/usr/bin/env bash
# Submit the seeds as one array and the aggregating job after it:  cluster/slurm/submit.sh 0-2
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
array=$(sbatch --parsable --array="${1:?the seeds, as an array range: 0-2}" "$here/seeds.sbatch")
sbatch --dependency=afterok:"$array" "$here/aggregate.sbatch"
