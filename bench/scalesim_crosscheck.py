"""Array cycles of `accel perf` (exact to the RTL) against SCALE-Sim on the same GEMMs.

SCALE-Sim 3.0 breaks under numpy 2, so it runs in its own environment::

    python3 -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim "numpy<2"
    .venv/bin/python bench/scalesim_crosscheck.py --scalesim-python /tmp/scalesim-venv/bin/python \\
        out/cnn_mnist.qmodel out/resnet_mnist.qmodel --size 8 --size 16

Every conv/linear layer is cut into its per-group GEMMs (M = output pixels,
N = output channels of the group, K = reduction) and given to SCALE-Sim as a
GEMM topology on an output-stationary array of the same size, with the
interface bandwidth computed (no memory stalls), so both count compute cycles
only. This script runs itself under the SCALE-Sim interpreter for that part.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SCALESIM_CFG = """[general]
run_name = accel

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 64
FilterSramSzkB = 64
OfmapSramSzkB = 64
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = os
Bandwidth = 10
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""


def run_scalesim(gemms: list[tuple[str, int, int, int]], rows: int, cols: int) -> list[int]:
    """Total compute cycles per GEMM (SCALE-Sim side; runs under its own interpreter)."""
    import contextlib
    import csv
    import io

    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "accel.cfg"
        cfg.write_text(SCALESIM_CFG.format(rows=rows, cols=cols))
        topo = Path(tmp) / "gemms.csv"
        topo.write_text("Layer, M, N, K,\n" + "".join(f"{name}, {m}, {n}, {k},\n" for name, m, n, k in gemms))
        layout = Path(tmp) / "layout.csv"  # required by SCALE-Sim 3.0 even without custom layouts
        layout.write_text("Layer name,\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                       layout=str(layout), input_type_gemm=True)
        with contextlib.redirect_stdout(io.StringIO()):
            sim.run_scale(top_path=tmp)
        report = next(Path(tmp).rglob("COMPUTE_REPORT.csv"))
        with open(report) as f:
            rows_ = list(csv.reader(f))[1:]
        return [int(float(r[1])) for r in rows_ if r]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", metavar="MODEL.qmodel")
    ap.add_argument("--size", type=int, action="append", help="square array size (repeatable; default 8)")
    ap.add_argument("--scalesim-python", default="/tmp/scalesim-venv/bin/python")
    ap.add_argument("--scalesim-child", help=argparse.SUPPRESS)  # JSON job, run under SCALE-Sim's python
    args = ap.parse_args()
    if args.scalesim_child:
        job = json.loads(args.scalesim_child)
        print(json.dumps(run_scalesim([tuple(g) for g in job["gemms"]], job["rows"], job["cols"])))
        return 0

    from accel.ir import MAC_OPS, load_model
    from accel.perf.cycles import array_work, shape_problems

    print("| model | array | layer | GEMM M x N x K (x groups) | accel cycles | SCALE-Sim cycles | accel / SCALE-Sim |")
    print("|---|---|---|---|---|---|---|")
    for path in args.models:
        model = load_model(path)
        for size in args.size or [8]:
            cfg = model.config.replace(rows=size, cols=size)
            layers = [lay for lay in model.layers if lay.op in MAC_OPS]
            gemms, owners = [], []
            for lay in layers:
                for p in shape_problems(model, lay):
                    gemms.append((f"{lay.name}:{len(gemms)}", p.pixels, p.channels_out, p.depth))
                    owners.append(lay.name)
            job = json.dumps({"gemms": gemms, "rows": size, "cols": size})
            out = subprocess.run([args.scalesim_python, __file__, "--scalesim-child", job], capture_output=True,
                                 text=True, check=True)
            theirs_per_gemm = json.loads(out.stdout.strip().splitlines()[-1])
            for lay in layers:
                theirs = sum(c for c, o in zip(theirs_per_gemm, owners) if o == lay.name)
                mine = array_work(model, lay, cfg).cycles
                probs = [g for g, o in zip(gemms, owners) if o == lay.name]
                _, m, n, k = probs[0]
                shape = f"{m} x {n} x {k}" + (f" (x {len(probs)})" if len(probs) > 1 else "")
                print(f"| {Path(path).stem} | {size}x{size} | {lay.name} | {shape} | {mine:,} | {theirs:,} "
                      f"| {mine / theirs:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
