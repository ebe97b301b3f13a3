#!/usr/bin/env bash
# Run every chapter of the book as a notebook test (nbval).
#
#   bash scripts/nbval_chapters.sh [book/NN_chapter.md ...] [pytest args ...]
#
# Each book/[0-9]*.md chapter (or only those named) is converted with jupytext to .ipynb in
# the scratch folder .nbval/book/ (git-ignored; never beside the sources) and executed by
# `python -m pytest --nbval-lax`. Converted MyST notebooks have no stored outputs to compare
# against, so the lax mode is used: a chapter fails when one of its cells raises (cells
# tagged `# NBVAL_CHECK_OUTPUT` still have their outputs compared).
#
# Relative paths keep their meaning: the kernel runs in .nbval/book/, one level below
# .nbval/, and .nbval/ holds a symlink to every top-level entry of the repository, so that a
# chapter's `../results/` is the repository's results/. `hypergrad` is importable through
# PYTHONPATH even without `pip install -e .`.
#
# Any argument that is not a chapter file is passed on to pytest (e.g. -x, -k, -v,
# --nbval-cell-timeout=600). The exit status is pytest's, except that "no tests collected"
# (pytest's 5) is turned into a failure (1).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

chapters=()
pytest_args=()
for arg in "$@"; do
  if [[ "$arg" == *.md && -f "$arg" ]]; then
    chapters+=("$arg")
  else
    pytest_args+=("$arg")
  fi
done
if [ ${#chapters[@]} -eq 0 ]; then
  shopt -s nullglob
  chapters=(book/[0-9]*.md)
  shopt -u nullglob
fi
if [ ${#chapters[@]} -eq 0 ]; then
  echo "nbval_chapters: no chapters found (book/[0-9]*.md)" >&2
  exit 1
fi

scratch="$root/.nbval"
rm -rf "$scratch"
mkdir -p "$scratch/book" results
# Mirror the repository's top level next to the scratch book/ folder.
for entry in "$root"/* "$root"/.[!.]*; do
  [ -e "$entry" ] || continue
  name=$(basename "$entry")
  case "$name" in
    .nbval | .git | book) continue ;;
  esac
  ln -s "$entry" "$scratch/$name"
done
# Non-chapter files of book/ (data, images, includes) are reachable from the chapters' cwd.
for entry in "$root"/book/*; do
  name=$(basename "$entry")
  case "$name" in
    *.md | *.ipynb | _build) continue ;;
  esac
  ln -s "$entry" "$scratch/book/$name"
done

for chapter in "${chapters[@]}"; do
  stem=$(basename "$chapter" .md)
  python -m jupytext --quiet --to ipynb --output "$scratch/book/$stem.ipynb" "$chapter"
done

export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
set +e
python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -c "$root/pyproject.toml" \
  --rootdir="$root" "$scratch/book" ${pytest_args[@]+"${pytest_args[@]}"}
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "nbval_chapters: no notebook cells were collected: that is a failure" >&2
  status=1
fi
exit "$status"
