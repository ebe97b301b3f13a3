"""The explorer checks of scripts/check_site.py (no browser needed for these parts)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
check_site = importlib.util.module_from_spec(spec)
sys.modules["check_site"] = check_site          # dataclasses look their module up
spec.loader.exec_module(check_site)


def _page(outputs):
    state = {"version_major": 2, "version_minor": 0, "state": {
        "a": {"model_name": "OutputModel", "state": {"outputs": outputs}},
        "b": {"model_name": "VBoxModel", "state": {}}}}
    return ('<html><script type="application/vnd.jupyter.widget-state+json">'
            + json.dumps(state) + "</script></html>")


def test_saved_explorer_pictures():
    png = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "f"}}
    assert check_site.saved_explorer_pictures(_page([png])) == 1
    assert check_site.saved_explorer_pictures(_page([])) == 0           # controls, no plot
    assert check_site.saved_explorer_pictures("<html></html>") == 0


def test_count_explorers_in_the_chapters():
    counts = {p.name: check_site.count_explorers(p.read_text(encoding="utf-8"))
              for p in (ROOT / "book").glob("*.md")}
    assert counts["03_online.md"] >= 1 and counts["04_marthe.md"] >= 1
    assert counts["01_schedules.md"] == 0


def test_images_inside_widget_outputs_are_counted():
    scan = check_site.DomScan()
    scan.feed('<div class="jupyter-widgets widget-output"><div><img src="data:x"><br>'
              '</div></div><p><img src="y"></p>')
    assert scan.widget_output_images == 1


def test_stderr_outputs_are_counted():
    scan = check_site.DomScan()
    scan.feed('<div class="output stderr highlight-myst-ansi notranslate"><pre>UserWarning'
              '</pre></div><div class="output stream highlight-myst-ansi"><pre>ok</pre></div>'
              '<p class="stderr-note">text</p>')
    assert scan.stderr_outputs == 1


# ------------------------------------------------------------------ the layout checks
def _layout(**kw):
    return {"viewport": 1280, "scrollWidth": 1280, "wide": [], "text": [], "images": [], **kw}


def test_the_probe_goes_last_in_the_body_and_its_json_is_read_back():
    page = check_site.inject_probe("<html><body><p>x</p></body></html>")
    assert page.endswith(check_site.LAYOUT_PROBE + "</body></html>")
    assert "LAYOUT_ID" not in page and "MIN_TEXT_PX" not in page      # filled in
    dom = ('<body><script type="application/json" id="check-site-layout">'
           + json.dumps(_layout()) + "</script></body>")
    assert check_site.read_layout(dom) == _layout()
    assert check_site.read_layout("<body></body>") is None


def test_a_clean_layout_passes_and_each_fault_is_named():
    ok, phone = _layout(), _layout(viewport=390, scrollWidth=390)
    assert check_site.layout_failures(ok, phone) == []
    bad = _layout(wide=["table 'a b': 975 px in 688 px"], scrollWidth=1300,
                  text=["span 'tiny': 8 px"])
    out = check_site.layout_failures(bad, _layout(viewport=390, scrollWidth=500))
    assert out == ["wider than its column at 1280 px: table 'a b': 975 px in 688 px",
                   "the page scrolls sideways at 1280 px (1300 px wide)",
                   "text smaller than 9 px: span 'tiny': 8 px",
                   "the page scrolls sideways at 390 px (500 px wide)"]
    assert check_site.layout_failures(None, phone) == ["the layout probe did not run"]


def test_a_figure_shown_too_small_for_its_smallest_text_fails():
    # 9 pt at 150 dpi is 18.75 px drawn; shown at 0.57 of its size it is 10.7 px, at half
    # size 9.4 px and at 0.44 8.3 px: figure text must reach 10 px
    half = {"src": "../_images/a.png", "shown": 800, "natural": 1400}
    small = {"src": "../_images/b.png", "shown": 672, "natural": 1517}
    phone = _layout(viewport=390, scrollWidth=390)
    assert check_site.layout_failures(_layout(images=[half]), phone) == []
    (fault,) = check_site.layout_failures(_layout(images=[small]), phone)
    assert fault == "figure b.png shown at 672 of 1517 px: its 9-pt text is 8.3 px"
    halved = {"src": "../_images/d.png", "shown": 700, "natural": 1400}
    assert check_site.layout_failures(_layout(images=[halved]), phone) == [
        "figure d.png shown at 700 of 1400 px: its 9-pt text is 9.4 px"]
    data = {"src": "data:image/png;base64,iVBOR", "shown": 672, "natural": 1800}  # explorer
    assert check_site.layout_failures(_layout(images=[data]), phone) == [
        "figure a data: image shown at 672 of 1800 px: its 9-pt text is 7.0 px"]
    svg = {"src": "../_images/c.svg", "shown": 10, "natural": 1000}   # not a raster figure
    assert check_site.layout_failures(_layout(images=[svg]), phone) == []


def test_a_hidden_cell_without_output_is_an_empty_toggle():
    def cell(tags, output):
        out = '<div class="cell_output docutils container">x</div>' if output else ""
        return (f'<div class="cell {tags}docutils container"><div class="cell_input docutils '
                f'container">code</div>{out}</div>')

    page = (cell("tag_hide-input ", False) + cell("tag_hide-input ", True) + cell("", False)
            + cell("tag_remove-output tag_hide-input ", False))
    assert check_site.empty_toggles(page) == 2
    assert check_site.empty_toggles(cell("", True)) == 0


def test_plain_subscripts_are_found_in_prose_only():
    page = ("<p>HD's last η_t against ∂f_T/∂η_t and f_T; Δₜ and β₀ are fine.</p>"
            "<table><tr><td>η_0 = 0.1</td></tr></table>"
            '<span class="math notranslate nohighlight">\\(\\eta_t\\)</span>'
            "<pre>η_t = 0.1 printed</pre><code>val_batch</code>"
            '<div class="highlight"><span>Δ_t = grad</span></div>'
            "<p>a val_batch setting, x_1 and my_f_T name</p>")
    found = check_site.plain_subscripts(page)
    assert len(found) == 5, found                  # η_t, f_T, η_t, f_T (prose), η_0 (table)
    assert all("printed" not in f and "grad" not in f for f in found)
    assert check_site.plain_subscripts("<p>ηₜ, Δₜ and β₀ read as subscripts</p>") == []
