"""The installed package (a built wheel, not the checkout) runs `accel rtl verify` from any folder.

The wheel is built from a copy of the sources, installed offline (``--no-deps``)
into a temporary venv that reuses this venv's site-packages for the
dependencies (a ``.pth`` line: the editable install of the checkout in there is
not activated, since ``.pth`` files of such a folder are not read), and run
from a folder outside the checkout with its own cache folder.
"""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cocotb
CHECKOUT = Path(__file__).resolve().parents[2]


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory):
    """A venv with the accel wheel installed; returns its ``bin/`` folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, src / name)
    shutil.copytree(CHECKOUT / "accel", src / "accel", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", src])
    (wheel,) = (tmp / "dist").glob("accel-*.whl")
    venv = tmp / "venv"
    _run([sys._base_executable, "-m", "venv", "--without-pip", venv])
    (new_site,) = (venv / "lib").glob("python*/site-packages")
    (new_site / "test_venv_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
          "-q", wheel])
    return venv / "bin"


def _clean_env(cache):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["ACCEL_CACHE_DIR"] = str(cache)
    return env


def test_the_installed_wheel_verifies_a_bundled_model_outside_the_checkout(installed_venv, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _clean_env(tmp_path / "cache")
    where = _run([installed_venv / "python", "-c", "import accel, accel.frontend.workflow as w; "
                  "print(accel.__file__); print(w.MODELS_DIR)"], cwd=work, env=env).split()
    venv = installed_venv.parent
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel, not the checkout
    _run([installed_venv / "accel", "quantize", Path(where[1]) / "cnn_digits.onnx", "--calib", "digits",
          "-o", "digits.qmodel"], cwd=work, env=env)
    out = _run([installed_venv / "accel", "rtl", "verify", "digits.qmodel", "--sim", "icarus", "--images", "1",
                "--layer", "classifier.classifier.3.Gemm", "--json", "--cycles", "cycles.json"], cwd=work, env=env)
    report = json.loads(out)
    assert report["ok"] and [la["mismatches"] for la in report["layers"]] == [0]
    builds = [p for p in (tmp_path / "cache" / "rtlsim").glob("icarus-*") if p.is_dir()]
    assert len(builds) == 1 and not any(venv.rglob("built.json"))  # built in the cache, not the package
