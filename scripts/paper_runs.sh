#!/usr/bin/env bash
# Part II at the paper's scale: Appendix C's grid, Section 5 (LRS-OPT and the online sweep),
# then the protocol study (MARTHE as its authors run it; the book's choices varied), then
# chapter 11's per-layer comparison (one process; the options are not passed to it).
# Resumable: every finished unit is a file under <out>/<experiment>/paper/units/, and running
# this again continues where it stopped (an LRS-OPT unit within its iterations).
#
#   scripts/paper_runs.sh [OUT] [options of python -m hypergrad.experiments ...]
#   nohup setsid nice -n 19 scripts/paper_runs.sh results > paper_runs.log 2>&1 &
#
# While developing, run it from a checkout that does not move (e.g. `git worktree add
# --detach ../run-paper HEAD`, then `cd ../run-paper && scripts/paper_runs.sh
# <this checkout>/results`): each unit file records the commit its process was started from.
set -euo pipefail
out=${1:-results}
shift || true
for experiment in sensitivity mnist-schedules mnist-protocol; do
  python -m hypergrad.experiments "$experiment" --scale paper --out "$out" "$@"
  # the book reads the unit files; the runner's aggregate (16 MB for the two, not committed)
  # is derived from them and comes back in seconds by running this again
  rm -f "$out/$experiment/paper/results.json"
done
python -m hypergrad.experiments per-layer --scale paper --out "$out"
rm -f "$out/per-layer/paper/results.json"
python -m hypergrad.experiments lr-free --scale paper --out "$out"
rm -f "$out/lr-free/paper/results.json"
python -m hypergrad.experiments lr-free-cnn --scale paper --out "$out"
rm -f "$out/lr-free-cnn/paper/results.json"
