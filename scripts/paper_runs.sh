#!/usr/bin/env bash
# Part II at the paper's scale: Appendix C's grid, then Section 5 (LRS-OPT and the online
# sweep). Resumable: every finished unit is a file under <out>/<experiment>/paper/units/, and
# running this again continues where it stopped (an LRS-OPT unit within its iterations).
#
#   scripts/paper_runs.sh [OUT] [options of python -m hypergrad.experiments ...]
#   nohup setsid nice -n 19 scripts/paper_runs.sh results > paper_runs.log 2>&1 &
set -euo pipefail
out=${1:-results}
shift || true
for experiment in sensitivity mnist-schedules; do
  python -m hypergrad.experiments "$experiment" --scale paper --out "$out" "$@"
done
