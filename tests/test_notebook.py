"""examples/quickstart.ipynb as a real client: run top to bottom in a Jupyter kernel on the tiny
trained model; any cell error fails the test, the animation must render as HTML and the
timeline as an inline GIF. (~35-45 s on 2 cores, plus the tiny model's training when no other
test has trained it yet.)"""
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "quickstart.ipynb"


def test_quickstart_notebook_runs_top_to_bottom(tiny_trained, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSITE_CHECKPOINTS", tiny_trained["checkpoint_dir"])
    monkeypatch.setenv("COMPOSITE_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    animation = [cell for cell in nb.cells if "animation" in cell.metadata.get("tags", [])]
    assert len(animation) == 1
    html = [out["data"]["text/html"] for out in animation[0].outputs
            if out.get("output_type") == "execute_result" and "text/html" in out.get("data", {})]
    assert html and "<script" in html[0] and "data:image/png;base64" in html[0], animation[0].outputs
    outputs = tmp_path / "outputs"
    timeline = [cell for cell in nb.cells if cell.cell_type == "code" and "generate_timeline(" in cell.source]
    assert len(timeline) == 1 and any("image/gif" in out.get("data", {}) for out in timeline[0].outputs)
    for name in ("wave.npy", "wave.npz", "wave.bvh", "wave_smpl.npz", "story.npz", "story.gif"):
        assert (outputs / name).exists(), name
    assert seconds < 120, f"the notebook took {seconds:.0f} s"
