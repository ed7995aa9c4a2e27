"""RTL simulation speed: simulated cycles per wall-clock second for a whole layer, both simulators.

Runs the largest convolution of the bundled ``cnn_mnist`` network (3x3, 16 -> 32
channels on 14x14, quantized on mnist5k) for a few test images on the default
8x8 array, under Verilator and Icarus, through the cocotb testbench (bulk-loaded
harness memories, clock inside the harness, one wait per job). Each run is
checked bit for bit against the engine and cycle for cycle against the schedule.

    .venv/bin/python bench/bench_rtl.py [--images N] [--repeat R] [--sims verilator,icarus]

Prints a markdown table and writes ``bench/rtl_results.json`` (committed, with the machine).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

LAYER = "features.features.3.Conv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--icarus-images", type=int, default=1, help="images under Icarus (it is ~300x slower)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sims", default="verilator,icarus")
    ap.add_argument("--out", default="bench/rtl_results.json")
    args = ap.parse_args()

    from accel.frontend import quantize_onnx
    from accel.frontend.workflow import MODELS_DIR
    from accel.report import Column, Table, write_json
    from accel.rtlsim import build_simulation, model_inputs, verify_model

    model = quantize_onnx(MODELS_DIR / "cnn_mnist.onnx", "mnist5k")
    rows = []
    for sim in args.sims.split(","):
        images = args.images if sim == "verilator" else args.icarus_images
        x = model_inputs(model, None, images)
        t0 = time.perf_counter()
        build_simulation(model.config, sim)
        build_s = time.perf_counter() - t0
        runs = []
        for _ in range(args.repeat):
            (rep,) = verify_model(model, x, layers=[LAYER], sim=sim)
            assert rep.ok and rep.cycles_exact, f"{sim}: {rep.to_dict()}"
            runs.append(rep)
        run_rates = [r.cycles / r.run_s for r in runs]
        wall_rates = [r.cycles / r.wall_s for r in runs]
        rows.append({"simulator": sim, "layer": LAYER, "images": images, "cycles": runs[0].cycles,
                     "tiles": runs[0].tiles, "outputs": runs[0].outputs, "mismatches": runs[0].mismatches,
                     "run_cycles_per_s_best": max(run_rates), "run_cycles_per_s_median": statistics.median(run_rates),
                     "with_load_cycles_per_s_median": statistics.median(wall_rates),
                     "build_s_or_cached": round(build_s, 2), "repeats": args.repeat})
    out = Path(args.out)
    # The results file is committed and regenerated in place by design.
    write_json(out, {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                                f"{__import__('os').cpu_count()} cpus",
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows},
               overwrite=True, indent=1)
    count = {"fmt": ",", "align": "right"}
    table = Table([Column("simulator"), Column("layer"), Column("images", **count), Column("cycles", **count),
                   Column("tiles", **count), Column("outputs", **count), Column("mismatches", **count),
                   Column("run cycles/s (median, best)", align="right"),
                   Column("with load/read-back cycles/s (median)", ",.0f", "right")],
                  [(r["simulator"], r["layer"], r["images"], r["cycles"], r["tiles"], r["outputs"], r["mismatches"],
                    f"{r['run_cycles_per_s_median']:,.0f} ({r['run_cycles_per_s_best']:,.0f})",
                    r["with_load_cycles_per_s_median"]) for r in rows])
    print(table.markdown())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
