"""Fast checks of the book's layout: table of contents, front matter, notebooks, citations.

These read files only (no build, no execution), so they run in well under a second.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PAGES = sorted(BOOK.glob("*.md"))
CHAPTERS = sorted(BOOK.glob("[0-9]*.md"))

# A {cite}-family role: {cite}`a,b`, {cite:p}`a`, {cite:t}`a`, {cite:ps}`a` ...
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIB_KEY = re.compile(r"^\s*@\s*(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


def _toc_files(node: object) -> list[str]:
    """Every ``file:`` and ``root:`` entry of a (nested) sphinx-external-toc structure."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_toc_files(item))
    return found


def _front_matter(path: Path) -> dict:
    """The YAML front matter of a MyST file, or ``{}`` when there is none."""
    text = path.read_text(encoding="utf-8")
    match = re.match(r"---\r?\n(.*?)\r?\n---\r?\n", text, re.DOTALL)
    if match is None:
        return {}
    return yaml.safe_load(match.group(1)) or {}


def test_book_has_chapters() -> None:
    assert (BOOK / "00_preface.md").is_file()
    assert CHAPTERS, "no book/[0-9]*.md chapters"


def test_toc_lists_every_page_and_only_existing_ones() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = _toc_files(toc)
    assert len(entries) == len(set(entries)), f"duplicate toc entries: {entries}"
    listed = {str(Path(entry).with_suffix("")) for entry in entries}
    missing_files = sorted(
        entry for entry in listed
        if not any((ROOT / f"{entry}{ext}").is_file() for ext in (".md", ".ipynb", ".rst"))
    )
    assert not missing_files, f"_toc.yml lists files that do not exist: {missing_files}"
    pages = {str(page.relative_to(ROOT).with_suffix("")) for page in PAGES}
    unlisted = sorted(pages - listed)
    assert not unlisted, f"book pages missing from _toc.yml: {unlisted}"
    assert toc.get("root") == "book/00_preface"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_jupytext_front_matter(chapter: Path) -> None:
    meta = _front_matter(chapter)
    representation = meta.get("jupytext", {}).get("text_representation", {})
    assert representation.get("extension") == ".md", chapter.name
    assert representation.get("format_name") == "myst", chapter.name
    kernel = meta.get("kernelspec", {})
    assert kernel.get("name") == "python3", chapter.name
    assert kernel.get("language") == "python", chapter.name


def test_no_notebooks_beside_the_sources() -> None:
    present = sorted(p.name for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert not present, f".ipynb files in book/ (the sources are MyST .md): {present}"
    tracked = subprocess.run(
        ["git", "ls-files", "book/*.ipynb", "book/**/*.ipynb"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout.split()
    assert not tracked, f".ipynb files tracked in book/: {tracked}"


def test_every_citation_is_in_the_bibliography() -> None:
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = {key for kind, key in BIB_KEY.findall(bib)
            if kind.lower() not in ("comment", "string", "preamble")}
    assert keys, "references.bib defines no entries"
    cited: dict[str, list[str]] = {}
    for page in PAGES:
        for group in CITE_ROLE.findall(page.read_text(encoding="utf-8")):
            for key in (k.strip() for k in group.split(",")):
                if key:
                    cited.setdefault(key, []).append(page.name)
    unknown = {key: pages for key, pages in cited.items() if key not in keys}
    assert not unknown, f"cited keys missing from references.bib: {unknown}"


def test_bibliography_keys_are_unique() -> None:
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = [key for _, key in BIB_KEY.findall(bib)]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, f"duplicate keys in references.bib: {duplicates}"


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def test_a_failing_chapter_does_not_erase_the_site() -> None:
    config = _config()["sphinx"]["config"]
    assert config["nb_execution_raise_on_error"] is False
    assert config["nb_merge_streams"] is True
    # ... and the README's build command still fails on it (-W turns the warning into an error)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "jupyter-book build . -W --keep-going" in readme


EXERCISE = re.compile(r"^:::\{exercise\}\n:label: ([\w-]+)", re.MULTILINE)
SOLUTION = re.compile(r"^:::\{solution-start\} ([\w-]+)\n:class: dropdown", re.MULTILINE)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_has_a_hidden_solution(chapter: Path) -> None:
    text = chapter.read_text(encoding="utf-8")
    exercises, solutions = EXERCISE.findall(text), SOLUTION.findall(text)
    if exercises or solutions:
        assert "sphinx_exercise" in _config()["sphinx"]["extra_extensions"]
    assert exercises == solutions, chapter.name
    assert text.count(":::{solution-start}") == text.count(":::{solution-end}")


MATH_BLOCK = re.compile(r"^\$\$\n(.*?)^\$\$", re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("chapter", PAGES, ids=lambda p: p.name)
def test_no_roles_inside_math_and_no_words_about_the_making(chapter: Path) -> None:
    text = chapter.read_text(encoding="utf-8")
    for block in MATH_BLOCK.findall(text):
        assert "{eq}" not in block, chapter.name
    if chapter.name[:2] in ("00", "01", "02", "03", "04", "08"):   # Part I and the library
        for phrase in ("equations.md", "lost in extraction", "lost when the paper",
                       "design notes", "lost from the text"):
            assert phrase not in text, (chapter.name, phrase)
