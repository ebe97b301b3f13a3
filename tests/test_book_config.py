"""Fast checks of the book's layout: table of contents, front matter, notebooks, citations.

These read files only (no build, no execution), so they run in well under a second.
"""

from __future__ import annotations

import ast
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


# ================================================================= the API reference
# book/api.md is the index; book/api/*.md has one page per module, each one ``automodule``.
# The modules are read from the package's files (a new module without a page fails here), and
# the pages' options from their text: nothing is imported or built.

PACKAGE = ROOT / "hypergrad"
API_INDEX = BOOK / "api.md"
API_PAGES = sorted((BOOK / "api").glob("*.md"))
AUTOMODULE = re.compile(r"^\.\. automodule:: ([\w.]+)[ \t]*\n((?:[ \t]+:[\w-]+:.*\n)*)", re.MULTILINE)
AUTODATA_NO_VALUE = re.compile(r"^\.\. autodata:: ([\w.]+)[ \t]*\n[ \t]+:no-value:", re.MULTILINE)


def _public_modules() -> dict[str, Path]:
    """Every module and package of ``hypergrad`` whose dotted name has no ``_`` part."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(part.startswith("_") for part in parts):
            continue
        found[".".join(parts)] = path
    return found


def _automodules(page: Path) -> list[tuple[str, dict[str, str]]]:
    """The ``automodule`` directives of a page: module name and options."""
    out = []
    for module, block in AUTOMODULE.findall(page.read_text(encoding="utf-8")):
        options = dict(re.findall(r":([\w-]+):[ \t]*(.*)", block))
        out.append((module, {k: v.strip() for k, v in options.items()}))
    return out


def _excluded(options: dict[str, str]) -> set[str]:
    return {name.strip() for name in options.get("exclude-members", "").split(",") if name.strip()}


def _api_toc_entry() -> dict:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            if chapter.get("file") == "book/api":
                return chapter
    raise AssertionError("_toc.yml has no book/api entry")


def test_every_api_page_is_in_the_toc_under_the_index() -> None:
    assert API_PAGES, "no book/api/*.md pages"
    listed = {str(Path(entry).with_suffix("")) for entry in _toc_files(_api_toc_entry().get("sections", []))}
    pages = {str(page.relative_to(ROOT).with_suffix("")) for page in API_PAGES}
    assert not pages - listed, f"API pages missing from _toc.yml (under book/api): {sorted(pages - listed)}"
    assert not listed - pages, f"_toc.yml lists API pages that do not exist: {sorted(listed - pages)}"
    index = API_INDEX.read_text(encoding="utf-8")
    unlinked = sorted(p.name for p in API_PAGES if f"(api/{p.name})" not in index)
    assert not unlinked, f"book/api.md does not link: {unlinked}"


def test_the_api_pages_document_every_module_once() -> None:
    documented = [module for page in [API_INDEX, *API_PAGES] for module, _ in _automodules(page)]
    duplicates = sorted({m for m in documented if documented.count(m) > 1})
    assert not duplicates, f"modules documented twice: {duplicates}"
    modules = _public_modules()
    missing, unknown = sorted(set(modules) - set(documented)), sorted(set(documented) - set(modules))
    assert not missing, f"modules without an API page (add book/api/<name>.md and its toc entry): {missing}"
    assert not unknown, f"API pages document modules that do not exist: {unknown}"


@pytest.mark.parametrize("page", API_PAGES, ids=lambda p: p.name)
def test_one_module_per_api_page(page: Path) -> None:
    found = _automodules(page)
    assert len(found) == 1, (page.name, [m for m, _ in found])
    module, options = found[0]
    is_package = _public_modules()[module].name == "__init__.py"
    # A module's page lists its members; a package's names are documented where they are defined
    # (documenting them again would describe each object twice).
    assert ("members" in options) != is_package, (page.name, module, options)
    assert "inherited-members" not in options and "undoc-members" not in options, page.name
    assert page.read_text(encoding="utf-8").startswith(f"# `{module}`\n"), page.name


def _namedtuple_fields(tree: ast.Module) -> set[str]:
    fields = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                (b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")) == "NamedTuple"
                for b in node.bases):
            fields |= {s.target.id for s in node.body
                       if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    return fields


def _members(tree: ast.Module) -> set[str]:
    """Functions, classes and methods defined in a module (what autodoc may document)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {s.name for s in node.body
                          if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return names


def _documented_data(source: str, tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level names autodoc shows with a value: assigned under a ``#:`` comment (or
    followed by a string), public, and in ``__all__`` when the module has one."""
    lines = source.splitlines()
    exported = None
    data: dict[str, ast.expr] = {}
    for i, node in enumerate(tree.body):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if names == ["__all__"] and isinstance(node.value, (ast.List, ast.Tuple)):
            exported = {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
            continue
        commented = node.lineno > 1 and lines[node.lineno - 2].lstrip().startswith("#:")
        nxt = tree.body[i + 1] if i + 1 < len(tree.body) else None
        followed = (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str))
        if commented or followed:
            data.update({n: node.value for n in names if not n.startswith("_")})
    return {n: v for n, v in data.items() if exported is None or n in exported}


def _value_is_debris(source: str, tree: ast.Module, value: ast.expr) -> bool:
    """Whether autodoc would show an object's repr (a module with its file's path, a function, a
    class: anything the module defines or imports from ``hypergrad``) or a value too long to read."""
    local = _members(tree)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hypergrad"):
            local |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            local |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if a.name.startswith("hypergrad")}
    names = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
    return bool(names & local) or len(ast.get_source_segment(source, value) or "") > 300


@pytest.mark.parametrize("page", API_PAGES, ids=lambda p: p.name)
def test_api_pages_leave_out_autodoc_debris(page: Path) -> None:
    """No "Alias for field number N", no object reprs (a module's repr carries the build
    machine's path), and nothing else left out by accident."""
    (module, options), = _automodules(page)
    path = _public_modules()[module]
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    excluded = _excluded(options)
    fields = _namedtuple_fields(tree)
    assert fields <= excluded, (
        f"{page.name}: NamedTuple fields would show as 'Alias for field number N'; add them to "
        f":exclude-members: (and describe them in the class docstring): {sorted(fields - excluded)}")
    hidden = set(AUTODATA_NO_VALUE.findall(page.read_text(encoding="utf-8")))
    debris = {name for name, value in _documented_data(source, tree).items()
              if _value_is_debris(source, tree, value)}
    need = {f"{module}.{name}" for name in debris}
    assert need <= hidden and debris <= excluded, (
        f"{page.name}: show these without their value (:exclude-members: them, then "
        f"'.. autodata:: <name>' with ':no-value:'): {sorted(debris - excluded)}")
    clashes = excluded & _members(tree)
    assert not clashes, f"{page.name}: :exclude-members: would also hide {sorted(clashes)}"
    unexplained = excluded - fields - {h.rpartition(".")[2] for h in hidden}
    assert not unexplained, f"{page.name}: excluded for no stated reason: {sorted(unexplained)}"


def test_autodoc_shows_only_the_librarys_own_docstrings() -> None:
    """torch's "Define the computation performed at every call" under an undocumented
    ``forward``, or ``str``'s docstring under a property, are not the library's words."""
    config = _config()["sphinx"]["config"]
    assert config.get("autodoc_inherit_docstrings") is False
    assert "inherited-members" not in config.get("autodoc_default_options", {})


DOUBLE_BACKTICKS = re.compile(r"``.+?``", re.DOTALL)


@pytest.mark.parametrize("module", sorted(_public_modules()), ids=str)
def test_docstrings_have_no_dollar_maths(module: str) -> None:
    """Docstrings are reStructuredText: ``$x$`` would show as typed (write ``:math:`x```)."""
    tree = ast.parse(_public_modules()[module].read_text(encoding="utf-8"))
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    for node in nodes:
        doc = DOUBLE_BACKTICKS.sub("", ast.get_docstring(node) or "")
        assert "$" not in doc, (module, getattr(node, "name", "<module>"))


INLINE_MARKUP = re.compile(r"``.+?``|:[\w:.-]+:`[^`]+`|`[^`]+`")


@pytest.mark.parametrize("module", sorted(_public_modules()), ids=str)
def test_attribute_docs_are_not_read_as_types(module: str) -> None:
    """napoleon reads the first line of an attribute's or a property's doc as ``type: text``:
    a colon there (outside inline markup) turns the words before it into a "Type:" field."""
    source = _public_modules()[module].read_text(encoding="utf-8")
    lines = source.splitlines()
    shown = set(_documented_data(source, ast.parse(source)))
    firsts = []
    for i, line in enumerate(lines):   # the first line of each ``#:`` block before a shown name
        if line.lstrip().startswith("#:") and not lines[i - 1].lstrip().startswith("#:"):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("#:"):
                j += 1
            name = re.match(r"\s*(\w+)", lines[j]).group(1) if j < len(lines) else "_"
            if name in shown or (lines[j].startswith(" ") and not name.startswith("_")):
                firsts.append(line.lstrip()[2:])
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and any(
                getattr(d, "id", getattr(d, "attr", "")) in ("property", "cached_property")
                for d in node.decorator_list):
            firsts.append((ast.get_docstring(node) or "").partition("\n")[0])
    misread = [f for f in firsts if re.search(r"(?<!:):(?!:)", INLINE_MARKUP.sub("", f))]
    assert not misread, (module, misread)


def test_no_code_line_of_any_chapter_is_longer_than_80_characters():
    """80 characters fit the text column (the site check measures it); a hidden cell's code
    is read by whoever opens it, so it is held to the same width."""
    long = []
    for page in sorted((ROOT / "book").glob("[0-9]*.md")):
        inside = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```{code-cell}"):
                inside = True
            elif inside and line.startswith("```"):
                inside = False
            elif inside and len(line) > 80:
                long.append(f"{page.name}:{number} ({len(line)})")
    assert not long, long
