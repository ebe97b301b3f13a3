#!/usr/bin/env python3
"""Check the built book in a real browser (headless Chromium).

Usage::

    python scripts/check_site.py [_build/html] [--out DIR] [--mathjax DIR] [--jobs N]

The script serves the built site on ``127.0.0.1`` (a free port, :mod:`http.server` in a
thread). It opens every chapter page (one per ``book/*.md`` source) in headless Chromium
three times: with ``--dump-dom`` at 1280 px and at 390 px, after scripts and MathJax have run
(``--virtual-time-budget``), and with ``--screenshot`` (1280×2000) into an output folder. The checks for each page are these:

* it loads: the dumped DOM is not empty and has a ``<title>``;
* every local link (``<a href>`` with no scheme, fragment and query removed) resolves to a
  file under the site;
* every ``<img src>`` is a file under the site with a non-zero size (or a ``data:`` URI);
* the math is rendered: pages whose source has math contain ``mjx-container`` elements,
  and no page contains a MathJax error (``mjx-merror``);
* no code cell printed to stderr (an ``output stderr`` block: a warning or an error that a
  reader would see on the page);
* a chapter whose code cells plot has at least one figure (an image in ``_images/``);
* the layout, measured in the page by a probe script the server adds to it (run after MathJax
  has typeset): at 1280 px, no table, displayed equation or code cell is wider than its
  column, no text is smaller than 9 px, and no figure is shown so small that its smallest
  text (9 pt at the book's 150 dpi) falls below 10 px; at a phone's 390 px the page does not
  scroll sideways;
* no code cell hides its code behind a "show code" toggle while showing no output (a toggle
  alone on the page);
* no prose, table or caption writes a subscript as plain text (``η_t``, ``Δ_0``, ``f_T``):
  outside code, maths and printed output, it reads ``ηₜ`` or is typeset;
* each explorer (``widgets.explore_*`` in a code cell) shows a picture: the page's saved
  widget state holds one Output widget with an ``image/png`` per explorer, and in the
  browser, after the widget manager has rendered that state, as many ``<img>`` sit inside
  ``widget-output`` elements.

The script prints one line per page and exits with 1 when a check fails, listing the
failures. It exits with 2 when Chromium is missing. It installs nothing.

The site loads MathJax 3 from a CDN. Without network access, point ``--mathjax`` (or
``$MATHJAX_DIR``) at a local MathJax 3 ``es5`` folder, for example the one from
``npm install mathjax@3`` (``node_modules/mathjax/es5``). The server then rewrites the
MathJax ``<script src>`` of each page to that copy. Nothing else on the page changes.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
VIRTUAL_TIME_BUDGET_MS = 10_000
WINDOW_SIZE = "1280,2000"
MATHJAX_ROUTE = "/__mathjax__/"
WIDGETS_ROUTE = "/__widgets__/"
# The ipywidgets manager of the saved widget state: require.js and the html-manager bundle
# (both from CDNs in the page). --widgets DIR serves DIR/requirejs/require.js and
# DIR/html-manager/dist/*.js instead (npm pack requirejs@2.3.4 @jupyter-widgets/html-manager).
REQUIRE_SRC = re.compile(r"""(src=["'])(?:https?:)?//[^"']*/require(?:\.min)?\.js(["'])""")
EMBED_SRC = re.compile(
    r"""(src=["'])(?:https?:)?//[^"']*@jupyter-widgets/html-manager@[^/"']*/dist/([\w.-]+\.js)(["'])"""
)
# <script src="https://.../mathjax@3/es5/tex-mml-chtml.js"> (any CDN, any MathJax bundle).
MATHJAX_SRC = re.compile(
    r"""(src=["'])(?:https?:)?//[^"']*mathjax[^"']*?/([\w.-]+\.js)(["'])""", re.IGNORECASE
)

#: text on a page smaller than this (CSS px) fails; so does a figure whose smallest text, at
#: the size the page shows it, is smaller than FIGURE_TEXT_PX (figures are drawn at
#: FIGURE_DPI with no text below FIGURE_MIN_PT points: the book's legends)
MIN_TEXT_PX = 9.0
FIGURE_TEXT_PX = 10.0
FIGURE_DPI = 150
FIGURE_MIN_PT = 9.0
#: the phone-sized viewport at which a page must not scroll sideways
PHONE_SIZE = "390,844"

# Layout probe, injected at the end of every served page: once the page has loaded and MathJax
# has typeset, it writes what it measured into the DOM as JSON (read back from --dump-dom).
LAYOUT_ID = "check-site-layout"
LAYOUT_PROBE_TEMPLATE = """<script>(function () {
  function describe(el) {
    var s = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
    var text = (el.textContent || "").replace(/\\s+/g, " ").trim().slice(0, 50);
    return s + (text ? " '" + text + "'" : "");
  }
  function visible(el) { return el.getClientRects().length > 0; }
  function probe() {
    var doc = document.documentElement, main = document.querySelector("main") || document.body;
    var out = {viewport: doc.clientWidth, scrollWidth: doc.scrollWidth, wide: [], text: [],
               images: []};
    main.querySelectorAll("table, mjx-container[display='true'], div.cell_input pre, img")
      .forEach(function (el) {
        if (!visible(el)) { return; }
        var box = el.parentElement.clientWidth, width = el.getBoundingClientRect().width;
        if (el.tagName === "PRE" || el.tagName === "MJX-CONTAINER") {
          // code and displayed maths overflow inside their own box (cut or scrolled)
          box = el.clientWidth; width = el.scrollWidth;
        }
        if (width > box + 1) { out.wide.push(describe(el) + ": " + Math.round(width)
                                             + " px in " + box + " px"); }
      });
    main.querySelectorAll("*").forEach(function (el) {
      var own = Array.prototype.some.call(el.childNodes, function (n) {
        return n.nodeType === 3 && n.textContent.trim() !== ""; });
      if (!own || !visible(el)) { return; }
      var size = parseFloat(getComputedStyle(el).fontSize);
      if (size < MIN_TEXT_PX) { out.text.push(describe(el) + ": " + size + " px"); }
    });
    main.querySelectorAll("img").forEach(function (el) {
      if (visible(el) && el.naturalWidth > 0) {
        out.images.push({src: (el.getAttribute("src") || "").slice(0, 80), shown: el.clientWidth,
                         natural: el.naturalWidth});
      }
    });
    var node = document.createElement("script");
    node.type = "application/json";
    node.id = "LAYOUT_ID";
    node.textContent = JSON.stringify(out);
    document.body.appendChild(node);
  }
  window.addEventListener("load", function () {
    var mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    (mj || Promise.resolve()).then(function () { setTimeout(probe, 1500); });
  });
})();</script>"""
LAYOUT_PROBE = (LAYOUT_PROBE_TEMPLATE.replace("LAYOUT_ID", LAYOUT_ID)
                .replace("MIN_TEXT_PX", f"{MIN_TEXT_PX:g}"))
LAYOUT_JSON = re.compile(
    r'<script type="application/json" id="check-site-layout">(.*?)</script>', re.DOTALL
)
CODE_CELL = re.compile(r"^(`{3,}|~{3,})\{code-cell\}[^\n]*\n(.*?)^\1\s*$", re.DOTALL | re.M)
FENCE = re.compile(r"^(`{3,}|~{3,})(?!\{math\})[^\n]*\n.*?^\1\s*$", re.DOTALL | re.M)
FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
MATH_MARKERS = re.compile(
    r"\$\$|\{math\}|\\begin\{|\\\(|\\\[|(?<![\\$\w])\$(?=\S)[^$\n]+?(?<=\S)\$(?![\w$])"
)
EXPLORER = re.compile(r"\bwidgets\.explore_\w+\(")
WIDGET_STATE = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', re.DOTALL
)
VOID_TAGS = frozenset("area base br col embed hr img input link meta source track wbr".split())
PLOTTING = re.compile(
    r"\b(?:plt|pyplot|matplotlib|plots)\b|\.plot\(|\bimshow\(|\bsubplots?\(|\.savefig\("
)


@dataclass
class PageReport:
    """The outcome of the checks on one page."""

    name: str
    failures: list[str] = field(default_factory=list)
    title: str = ""
    links: int = 0
    images: int = 0
    figures: int = 0
    math_nodes: int = 0
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failures

    def summary(self) -> str:
        """One line: status, page, title and counts."""
        status = "OK  " if self.ok else "FAIL"
        line = (f"{status} {self.name:<32} links={self.links:<3} images={self.images:<3} "
                f"figures={self.figures:<3} mathjax={self.math_nodes:<4} "
                f"title={self.title[:50]!r}")
        if self.failures:
            line += "\n" + "\n".join(f"       - {failure}" for failure in self.failures)
        return line


class DomScan(HTMLParser):
    """Collect what the checks need from a dumped DOM: title, links, images, math nodes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.hrefs: list[str] = []
        self.img_srcs: list[str] = []
        self.mjx_containers = 0
        self.mjx_errors = 0
        self.stderr_outputs = 0
        self.widget_output_images = 0
        self._open: list[bool] = []        # for each open element: is it a widget output?
        self._in_head = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag not in VOID_TAGS:
            self._open.append("widget-output" in values.get("class", "").split())
        if tag == "img" and any(self._open):
            self.widget_output_images += 1
        if {"output", "stderr"} <= set(values.get("class", "").split()):
            self.stderr_outputs += 1
        if tag == "head":
            self._in_head = True
        elif tag == "title" and self._in_head and not self.title:
            self._in_title = True
        elif tag == "a" and "href" in values:
            self.hrefs.append(values["href"])
        elif tag == "img":
            self.img_srcs.append(values.get("src", ""))
        elif tag == "mjx-container":
            self.mjx_containers += 1
        elif tag == "mjx-merror":
            self.mjx_errors += 1

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID_TAGS and self._open:
            self._open.pop()
        if tag == "head":
            self._in_head = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()


def source_features(source: str) -> tuple[bool, bool]:
    """Whether a MyST source has math in its text and plotting in its code cells."""
    body = FRONT_MATTER.sub("", source)
    code = "\n".join(match.group(2) for match in CODE_CELL.finditer(body))
    prose = INLINE_CODE.sub("", FENCE.sub("", body))
    return bool(MATH_MARKERS.search(prose)), bool(PLOTTING.search(code))


def count_explorers(source: str) -> int:
    """How many explorers (``widgets.explore_*(...)`` calls) the code cells of a source make."""
    body = FRONT_MATTER.sub("", source)
    return sum(len(EXPLORER.findall(m.group(2))) for m in CODE_CELL.finditer(body))


def saved_explorer_pictures(html: str) -> int:
    """How many Output widgets of a page's saved widget state hold an ``image/png``."""
    import json

    count = 0
    for block in WIDGET_STATE.findall(html):
        try:
            count += image_outputs(json.loads(block).get("state", {}))
        except ValueError:
            continue
    return count


def image_outputs(state: dict) -> int:
    """How many Output widgets of a saved widget state (model id → model) hold an image/png."""
    count = 0
    for model in state.values():
        if model.get("model_name") != "OutputModel":
            continue
        outputs = model.get("state", {}).get("outputs", [])
        count += any("image/png" in o.get("data", {}) for o in outputs)
    return count


CELL_START = re.compile(r'<div class="cell (?:tag_[^ "]+ )*docutils container"')


def empty_toggles(html: str) -> int:
    """How many code cells of a built page hide their code behind a "show code" toggle and
    show no output: a toggle alone on the page, with nothing to read beside it."""
    starts = [m.start() for m in CELL_START.finditer(html)] + [len(html)]
    count = 0
    for a, b in zip(starts, starts[1:], strict=False):
        head = html[a:a + 120]
        count += "tag_hide-input" in head and "cell_output" not in html[a:b]
    return count


#: a subscript written as plain text: a Greek letter (or ``f``, ``∂f``) then ``_`` and a character
PLAIN_SUBSCRIPT = re.compile(r"(?:[α-ωΑ-Ω]|(?<![\w.])f)_[\w{(]")

#: elements whose text is code, maths or printed output: a plain ``_`` is right there
VERBATIM_TAGS = {"pre", "code", "script", "style", "mjx-container", "math", "kbd", "samp"}


class ProseScan(HTMLParser):
    """The text of a page outside code, maths (``class="math …"``) and printed output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skip: list[str] = []          # the open verbatim element's tag, nested
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self.skip:
            if tag == self.skip[0]:
                self.skip.append(tag)
        elif tag in VERBATIM_TAGS or "math" in classes or "highlight" in classes:
            self.skip.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip and tag == self.skip[0]:
            self.skip.pop()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.text.append(data)


def plain_subscripts(html: str) -> list[str]:
    """The plain-text subscripts (``η_t``) in a built page's prose, tables and captions, each
    with a little context; code, maths and printed output are not read."""
    scan = ProseScan()
    scan.feed(html)
    text = " ".join(" ".join(scan.text).split())
    return [text[max(m.start() - 30, 0):m.end() + 10] for m in PLAIN_SUBSCRIPT.finditer(text)]


def inject_probe(html: str) -> str:
    """``html`` with the layout probe as the last element of its ``<body>``."""
    at = html.rfind("</body>")
    return html + LAYOUT_PROBE if at < 0 else html[:at] + LAYOUT_PROBE + html[at:]


def read_layout(dom: str) -> dict | None:
    """What the layout probe wrote into a dumped DOM (None: it did not run)."""
    import json

    found = LAYOUT_JSON.search(dom)
    if found is None:
        return None
    try:
        return json.loads(found.group(1))
    except ValueError:
        return None


def layout_failures(layout: dict | None, phone: dict | None) -> list[str]:
    """The layout checks: at the desktop width nothing is wider than its column (tables,
    displayed equations, code), no text is smaller than ``MIN_TEXT_PX``, no figure is shown
    so small that its smallest text falls below it; at the phone width the page does not
    scroll sideways."""
    if layout is None:
        return ["the layout probe did not run"]
    out = [f"wider than its column at {layout['viewport']} px: {w}" for w in layout["wide"]]
    if layout["scrollWidth"] > layout["viewport"] + 1:
        out.append(f"the page scrolls sideways at {layout['viewport']} px "
                   f"({layout['scrollWidth']} px wide)")
    out += [f"text smaller than {MIN_TEXT_PX:g} px: {x}" for x in layout["text"][:5]]
    for img in layout["images"]:
        png = (img["src"].startswith("data:image/png")
               or img["src"].split("?")[0].rsplit("/", 1)[-1].endswith(".png"))
        if not png:                     # an explorer's picture is a data: URI
            continue
        smallest = FIGURE_MIN_PT * FIGURE_DPI / 72 * img["shown"] / img["natural"]
        if smallest < FIGURE_TEXT_PX:
            name = "a data: image" if img["src"].startswith("data:") else \
                img["src"].rsplit("/", 1)[-1]
            out.append(f"figure {name} shown at {img['shown']} of "
                       f"{img['natural']} px: its {FIGURE_MIN_PT:g}-pt text is "
                       f"{smallest:.1f} px")
    if phone is None:
        out.append("the layout probe did not run at the phone width")
    elif phone["scrollWidth"] > phone["viewport"] + 1:
        out.append(f"the page scrolls sideways at {phone['viewport']} px "
                   f"({phone['scrollWidth']} px wide)")
    return out


def find_chromium(requested: str | None) -> str | None:
    """The Chromium executable to use, or None when there is none."""
    for candidate in ([requested] if requested else list(CHROMIUM_CANDIDATES)):
        found = shutil.which(candidate)
        if found:
            return found
    return None


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serve the site quietly, optionally with MathJax from a local folder."""

    mathjax_dir: Path | None = None
    widgets_dir: Path | None = None

    def log_message(self, format: str, *args: object) -> None:
        """Do not log requests."""

    def do_GET(self) -> None:
        """Serve MathJax from the local copy, rewrite pages to use it, else as usual."""
        path = urlsplit(self.path).path
        if self.mathjax_dir is not None and path.startswith(MATHJAX_ROUTE):
            self._send_file(self.mathjax_dir / unquote(path[len(MATHJAX_ROUTE):]), self.mathjax_dir)
        elif self.widgets_dir is not None and path.startswith(WIDGETS_ROUTE):
            self._send_file(self.widgets_dir / unquote(path[len(WIDGETS_ROUTE):]), self.widgets_dir)
        elif path.endswith(".html"):
            local = Path(self.translate_path(path))
            if not local.is_file():
                self.send_error(404)
                return
            html = local.read_text(encoding="utf-8")
            if self.mathjax_dir is not None:
                html = MATHJAX_SRC.sub(rf"\g<1>{MATHJAX_ROUTE}\g<2>\g<3>", html)
            if self.widgets_dir is not None:
                html = REQUIRE_SRC.sub(rf"\g<1>{WIDGETS_ROUTE}requirejs/require.js\g<2>", html)
                html = EMBED_SRC.sub(rf"\g<1>{WIDGETS_ROUTE}html-manager/dist/\g<2>\g<3>", html)
                # the CDN's subresource-integrity hash is of its minified copy, not ours
                html = re.sub(r"""\sintegrity=["'][^"']*["']""", "", html)
            html = inject_probe(html)
            self._send_bytes(html.encode("utf-8"), "text/html; charset=utf-8")
        else:
            super().do_GET()

    def _send_file(self, file: Path, root: Path) -> None:
        root = root.resolve()
        resolved = file.resolve()
        if root not in resolved.parents or not resolved.is_file():
            self.send_error(404)
            return
        self._send_bytes(resolved.read_bytes(), self.guess_type(str(resolved)))

    def _send_bytes(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(site: Path, mathjax_dir: Path | None, widgets_dir: Path | None = None) -> Iterator[str]:
    """Serve ``site`` on a free port of 127.0.0.1 in a thread; yield the base URL."""
    handler = type("Handler", (SiteHandler,), {"mathjax_dir": mathjax_dir,
                                                "widgets_dir": widgets_dir})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def run_chromium(chromium: str, url: str, extra: list[str], timeout: float) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; return its stdout."""
    profile = tempfile.mkdtemp(prefix="check-site-profile-")
    try:
        result = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", *extra, url],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited with {result.returncode}: "
                           f"{result.stderr.strip().splitlines()[-1:]}")
    return result.stdout


def local_target(site: Path, page_url: str, base_url: str, ref: str) -> Path | None:
    """The file under ``site`` that a link or image on a page points to (None if remote)."""
    parts, base = urlsplit(urljoin(page_url, ref)), urlsplit(base_url)
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
        return None
    relative = unquote(parts.path).lstrip("/")
    target = site / relative
    return target / "index.html" if relative == "" or relative.endswith("/") else target


def check_page(site: Path, base_url: str, page: Path, source: Path, out_dir: Path,
               chromium: str, timeout: float) -> PageReport:
    """Load one page in Chromium, take its screenshot and run every check on it."""
    name = page.relative_to(site).as_posix()
    report = PageReport(name)
    url = urljoin(base_url, name)
    has_math, has_plots = source_features(source.read_text(encoding="utf-8"))
    try:
        dom = run_chromium(chromium, url, ["--dump-dom", f"--window-size={WINDOW_SIZE}"],
                           timeout)
        phone = read_layout(run_chromium(chromium, url, ["--dump-dom",
                                                         f"--window-size={PHONE_SIZE}"],
                                         timeout))
        shot = out_dir / f"{page.stem}.png"
        run_chromium(chromium, url, [f"--screenshot={shot}", f"--window-size={WINDOW_SIZE}"],
                     timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        report.failures.append(f"browser: {error}")
        return report
    if shot.is_file() and shot.stat().st_size > 0:
        report.screenshot = shot
    else:
        report.failures.append("no screenshot written")

    scan = DomScan()
    scan.feed(dom)
    report.title = scan.title
    if not dom.strip():
        report.failures.append("empty DOM")
    if not scan.title:
        report.failures.append("no <title>")

    for href in scan.hrefs:
        if href.startswith(("#", "mailto:", "javascript:", "tel:")) or href == "":
            continue
        target = local_target(site, url, base_url, href)
        if target is None:
            continue
        report.links += 1
        if not target.is_file():
            report.failures.append(f"broken link: {href}")

    for src in scan.img_srcs:
        report.images += 1
        if src.startswith("data:"):
            report.figures += 1
            if len(src.split(",", 1)[-1]) == 0:
                report.failures.append("empty data: image")
            continue
        target = local_target(site, url, base_url, src)
        if target is None:
            report.failures.append(f"image not in the site: {src}")
        elif not target.is_file():
            report.failures.append(f"missing image: {src}")
        elif target.stat().st_size == 0:
            report.failures.append(f"empty image file: {src}")
        elif target.parent.name == "_images":
            report.figures += 1

    report.failures += layout_failures(read_layout(dom), phone)
    report.math_nodes = scan.mjx_containers
    if has_math and scan.mjx_containers == 0:
        report.failures.append("math in the source but no mjx-container: MathJax did not render"
                               " (offline? use --mathjax DIR)")
    if scan.mjx_errors:
        report.failures.append(f"{scan.mjx_errors} MathJax error(s) (mjx-merror)")
    if scan.stderr_outputs:
        report.failures.append(f"{scan.stderr_outputs} cell output(s) on stderr (a warning or "
                               "error printed on the page)")
    if has_plots and report.figures == 0:
        report.failures.append("the source plots but the page has no figure")
    toggles = empty_toggles(page.read_text(encoding="utf-8"))
    if toggles:
        report.failures.append(f"{toggles} hidden code cell(s) with no output: a 'show code' "
                               "toggle alone (tag the cell remove-input)")
    plain = plain_subscripts(page.read_text(encoding="utf-8"))
    if plain:
        report.failures.append(f"{len(plain)} subscript(s) written as plain text, first: "
                               f"…{plain[0]}… (write ηₜ, or typeset it)")
    explorers = count_explorers(source.read_text(encoding="utf-8"))
    if explorers:
        saved = saved_explorer_pictures(page.read_text(encoding="utf-8"))
        if saved < explorers:
            report.failures.append(f"{explorers} explorer(s) but {saved} saved widget "
                                   "output(s) with a picture")
        if scan.widget_output_images < explorers:
            report.failures.append(f"{explorers} explorer(s) but {scan.widget_output_images} "
                                   "picture(s) rendered in widget outputs")
    return report


def chapter_pages(site: Path, sources: Path) -> list[tuple[Path, Path]]:
    """(built page, MyST source) for each ``book/*.md``, in name order."""
    return [(site / "book" / f"{source.stem}.html", source)
            for source in sorted((sources / "book").glob("*.md"))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="_build/html", type=Path,
                        help="the built HTML folder (default: _build/html)")
    parser.add_argument("--source", type=Path, default=None,
                        help="the repository root holding book/*.md (default: SITE/../..)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the screenshots (default: a new temporary folder)")
    parser.add_argument("--mathjax", type=Path, default=os.environ.get("MATHJAX_DIR") or None,
                        help="a local MathJax 3 es5 folder to use instead of the CDN "
                             "(default: $MATHJAX_DIR)")
    parser.add_argument("--widgets", type=Path, default=os.environ.get("WIDGETS_DIR") or None,
                        help="a folder with requirejs/require.js and html-manager/dist/ (the "
                             "ipywidgets manager) to use instead of the CDNs (default: "
                             "$WIDGETS_DIR)")
    parser.add_argument("--chromium", default=None, help="the Chromium executable")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                        help="pages checked in parallel")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds allowed for one Chromium run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the checks; return the exit status."""
    args = parse_args(argv)
    site: Path = args.site.resolve()
    sources: Path = (args.source or site.parent.parent).resolve()
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_site: Chromium not found. Install it with:\n"
              "    apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    if not (site / "index.html").is_file() and not (site / "book").is_dir():
        print(f"check_site: {site} is not a built site (run: jupyter-book build .)",
              file=sys.stderr)
        return 1
    mathjax_dir: Path | None = args.mathjax.resolve() if args.mathjax else None
    if mathjax_dir is not None and not any(mathjax_dir.glob("*.js")):
        print(f"check_site: --mathjax {mathjax_dir} holds no MathJax bundle (*.js)",
              file=sys.stderr)
        return 1
    pages = chapter_pages(site, sources)
    if not pages:
        print(f"check_site: no book/*.md sources under {sources}", file=sys.stderr)
        return 1
    out_dir: Path = (args.out or Path(tempfile.mkdtemp(prefix="check-site-shots-"))).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"check_site: {len(pages)} pages of {site}, screenshots in {out_dir}, "
          f"MathJax from {mathjax_dir or 'the page (CDN)'}")

    reports: list[PageReport] = []
    widgets_dir: Path | None = args.widgets.resolve() if args.widgets else None
    if widgets_dir is not None and not (widgets_dir / "html-manager/dist/embed-amd.js").is_file():
        print(f"check_site: --widgets {widgets_dir} has no html-manager/dist/embed-amd.js",
              file=sys.stderr)
        return 1
    with serve(site, mathjax_dir, widgets_dir) as base_url:
        missing = [PageReport(page.relative_to(site).as_posix(),
                              [f"no page built for {source.relative_to(sources)}"])
                   for page, source in pages if not page.is_file()]
        built = [(page, source) for page, source in pages if page.is_file()]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            reports = list(pool.map(
                lambda item: check_page(site, base_url, item[0], item[1], out_dir, chromium,
                                        args.timeout),
                built,
            ))
        reports += missing

    for report in reports:
        print(report.summary())
    failed = [report for report in reports if not report.ok]
    print(f"check_site: {len(reports) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print("Failures:")
        for report in failed:
            for failure in report.failures:
                print(f"  {report.name}: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
