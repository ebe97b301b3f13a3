#!/usr/bin/env bash
# The GPU check (issue 13.4): one run, <= 8 minutes on one H200, one JSON file in $1
# (default benchmarks/results/). Extra arguments go to scripts/device_check.py, e.g.
#   bash scripts/device_check.sh benchmarks/results/ --device cpu --tiny     (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out="$1"; shift; fi
export HYPERGRAD_DATA="${HYPERGRAD_DATA:-$(cd .. && pwd)/shared/data}"
[ -d "$HYPERGRAD_DATA" ] || unset HYPERGRAD_DATA        # random images stand in for MNIST
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 python scripts/device_check.py --out "$out" "$@"
