"""The explorers in a real Jupyter kernel, as the book build runs them (nbclient with the
widget state stored): the saved state of each explorer holds a picture, and changing a
control in the live kernel redraws it. Also: the chapters' figures are rendered at 150 dpi.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipywidgets")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]

SETUP = """\
import hypergrad as hg
from hypergrad import viz
from hypergrad.viz import widgets
setup = viz.chapter_setup(seed=0, verbose=False)
import matplotlib
assert matplotlib.rcParams["figure.dpi"] >= 150, matplotlib.rcParams["figure.dpi"]
"""

CHANGE = """\
def pngs(w):
    return [o["data"]["image/png"] for o in w.output.outputs if "image/png" in o["data"]]
before = pngs(w)
w.controls[{control!r}].value = {value!r}
after = pngs(w)
assert len(before) == len(after) == 1 and before != after, (len(before), len(after))
print("redrawn")
"""


def _image_outputs(state: dict) -> int:
    """The site check's own counter (scripts/check_site.py), on a kernel's saved state."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "check_site.py"
    spec = importlib.util.spec_from_file_location("check_site", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_site", module)      # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.image_outputs(state)


@pytest.mark.parametrize("explorer,control,value", [
    ("explore_fig1", "method", "hd"),
    ("explore_marthe", "log10_beta", -6.0),
])
def test_explorer_in_a_kernel_shows_a_picture(explorer, control, value, monkeypatch):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP),
                nbformat.v4.new_code_cell(f"w = widgets.{explorer}(steps=5)\nw"),
                nbformat.v4.new_code_cell(CHANGE.format(control=control, value=value))]
    # The kernel inherits this process's environment.
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     store_widget_state=True,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    view = nb.cells[1].outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in view      # the explorer is shown
    assert nb.cells[2].outputs[-1]["text"].strip() == "redrawn"
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert _image_outputs(state) == 1          # the saved page shows the (redrawn) picture
