"""Concurrent `accel rtl verify` runs: shared simulator builds, private run folders, no false mismatch."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.cocotb
LAYERS = ("classifier.classifier.1.Gemm", "classifier.classifier.3.Gemm")


def _start_verify(qmodel, sim, layer, cwd, cache=None):
    env = dict(os.environ)
    if cache is not None:
        env["ACCEL_CACHE_DIR"] = str(cache)
    cmd = [sys.executable, "-m", "accel", "rtl", "verify", str(qmodel), "--sim", sim, "--layer", layer,
           "--images", "2", "--json", "--cycles", str(cwd / f"cycles-{sim}-{layer}.json")]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _zero_mismatches(proc):
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"
    report = json.loads(out)
    assert report["ok"] and [la["mismatches"] for la in report["layers"]] == [0]
    return report


def test_verilator_and_icarus_verify_at_the_same_time(digits_qmodel, tmp_path):
    procs = [_start_verify(digits_qmodel, sim, LAYERS[0], tmp_path) for sim in ("verilator", "icarus")]
    for proc in procs:
        _zero_mismatches(proc)


def test_two_verifies_share_one_build_from_a_cold_cache(digits_qmodel, tmp_path):
    # Same simulator and configuration, empty cache: one process builds under the lock, the other
    # waits and reuses it; each runs its jobs in its own folder, removed afterwards.
    cache = tmp_path / "cache"
    procs = [_start_verify(digits_qmodel, "icarus", layer, tmp_path, cache) for layer in LAYERS]
    reports = [_zero_mismatches(proc) for proc in procs]
    assert [r["layers"][0]["layer"] for r in reports] == list(LAYERS)
    builds = [p.name for p in (cache / "rtlsim").iterdir() if p.is_dir()]
    assert len(builds) == 1 and builds[0].startswith("icarus-8x8-"), builds
    assert list((cache / "runs").iterdir()) == []
