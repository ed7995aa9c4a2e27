"""The main job (``accel demo`` / ``make demo``), end to end on the bundled models and data.

1. every bundled ONNX model is quantized with the defaults and evaluated through the
   bit-exact engine on its test split (:func:`accel.frontend.workflow.run_demo`);
2. the conv/linear layers of one of them run on the generated Verilog under a real
   simulator and are compared with the engine bit for bit, with their cycles held to
   the cycle schedule (:func:`accel.rtlsim.verify_model`);
3. the report goes to ``out/demo_report.md`` and ``out/demo_report.json``, the
   per-tile cycles to ``out/rtl_cycles.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["RTL_MODEL", "run_main_job", "format_rtl"]

#: The bundled model whose layers the demo runs on the RTL (the smallest: seconds under Verilator).
RTL_MODEL = "cnn_digits"


def run_main_job(out_dir: str | os.PathLike = "out", *, rtl: bool = True, sim: str = "verilator",
                 rtl_images: int = 2, build_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Run the main job; returns the report (also written to ``out_dir``).

    ``build_dir``: cache folder for the simulator build (default :func:`accel.rtlsim.cache_dir`).
    """
    from .frontend.workflow import run_demo

    out_dir = Path(out_dir)
    report = run_demo(out_dir, progress=progress)
    if rtl:
        report["rtl"] = rtl_check(out_dir, sim=sim, images=rtl_images, cache=build_dir)
        (out_dir / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
        with open(out_dir / "demo_report.md", "a") as md:
            md.write("\n" + format_rtl(report["rtl"], markdown=True) + "\n")
    return report


def rtl_check(out_dir: Path, *, sim: str, images: int, cache: str | os.PathLike | None = None) -> dict:
    """Run the MAC layers of :data:`RTL_MODEL` (quantized by the demo) on the RTL against the engine."""
    from .ir import load_model
    from .rtlsim.verify import model_inputs, verify_model, write_cycles

    model = load_model(out_dir / f"{RTL_MODEL}.qmodel")
    x = model_inputs(model, None, images)
    reports = verify_model(model, x, sim=sim, cache=cache)
    cycles_path = write_cycles(reports, out_dir / "rtl_cycles.json", config=model.config, sim=sim)
    return {"model": RTL_MODEL, "simulator": sim, "images": int(x.shape[0]),
            "array": f"{model.config.rows}x{model.config.cols}", "cycles_file": str(cycles_path),
            "ok": all(r.ok for r in reports), "layers": [r.to_dict() for r in reports]}


def format_rtl(rtl: dict, markdown: bool = False) -> str:
    """The RTL section of the report, as a markdown table or plain text."""
    title = (f"RTL: {rtl['model']} ({rtl['images']} test images) on the {rtl['array']} array under "
             f"{rtl['simulator']}, compared with the engine")
    head = ("layer", "op", "outputs", "mismatches", "cycles", "cycle model")
    rows = [(r["layer"], r["op"], str(r["outputs"]), str(r["mismatches"]), f"{r['cycles']:,}",
             "exact" if r["cycles_exact"] else f"{r['schedule_cycles']:,}") for r in rtl["layers"]]
    verdict = "all outputs match the engine" if rtl["ok"] else "MISMATCH between the RTL and the engine"
    if markdown:
        lines = [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines + ["", f"{verdict}; per-tile cycles in `{rtl['cycles_file']}`."])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines + [verdict])
