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
