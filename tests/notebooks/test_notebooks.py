"""Every notebook in ``notebooks/`` runs top to bottom, and none is committed with outputs.

Each notebook executes with nbclient in the venv's ``python3`` kernel (ipykernel in the same
environment; no kernelspec is installed at test time), in a temporary working folder, with this
checkout first on the kernel's ``PYTHONPATH`` so that it imports the ``accel`` under test. A
failure names the cell, its source and the error. New notebooks are picked up by the glob.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: Seconds one cell may take (the slowest, a cold Verilator build, takes about 30 s on 2 idle cores).
CELL_TIMEOUT_S = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _ids(paths):
    return [p.stem for p in paths]


def _runs(paths):
    """One case per notebook, with the pytest marks its metadata names (``"accel": {"pytest_marks": [...]}``:
    ``cocotb`` for a notebook that runs a simulator), so that ``-m "not cocotb"`` leaves it out too."""
    cases = []
    for path in paths:
        marks = nbformat.read(path, as_version=4).metadata.get("accel", {}).get("pytest_marks", [])
        cases.append(pytest.param(path, id=path.stem, marks=[getattr(pytest.mark, m) for m in marks]))
    return cases


def test_the_notebooks_folder_holds_the_tutorials():
    assert {"01_quantize_your_model", "03_drive_the_mac_array_with_cocotb"} <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs or execution counts; clear them "
                       f"(Jupyter: Edit > Clear Outputs of All Cells) before committing")


def _failing_cell(nb) -> tuple[int, str]:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return i, cell.source
    return -1, "(not found)"


@pytest.mark.parametrize("path", _runs(NOTEBOOKS))
def test_notebook_runs_top_to_bottom(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    failure = None
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        index, source = _failing_cell(nb)
        trace = _ANSI.sub("", exc.traceback or "").split("------------------\n")[-1]  # nbclient repeats the source
        failure = (f"{path.name}: cell {index} failed with {exc.ename}: {exc.evalue}\n--- cell {index} ---\n"
                   f"{source}\n--- traceback (end) ---\n{trace[-3000:]}")
    if failure:  # outside the except block, so that pytest shows this and not nbclient's coloured chain
        pytest.fail(failure, pytrace=False)
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before, f"{path.name} wrote into {NOTEBOOK_DIR}"
