"""Cycles, MAC energy and on-chip memory traffic of `accel perf` against ZigZag on the same GEMMs.

ZigZag (PyPI ``zigzag-dse``) runs in its own environment; version 3.9.1 imports
``six`` without declaring it, so install that too::

    python3 -m venv /tmp/zigzag-venv
    /tmp/zigzag-venv/bin/pip install zigzag-dse==3.9.1 six==1.17.0
    .venv/bin/python bench/zigzag_crosscheck.py --size 8 --size 16 --force

With no MODEL.qmodel the bundled models are quantized with the defaults on
their own data (as ``accel demo`` does). Every conv/linear layer is cut into
its per-group GEMMs (M = output pixels, N = output channels of the group,
K = reduction), exactly as the SCALE-Sim cross-check does, and each distinct
GEMM is priced by ZigZag on a model of our core: a rows x cols array, output
stationary (M unrolled over the rows, N over the columns, K reduced in time
in each PE's accumulator), the temporal loops fixed to our tile order (K
innermost, then pixel blocks, then column blocks), one activation register per
row and one weight register per column (broadcast, no reuse), a 32-bit
accumulator per PE, and the activation, weight and output buffers of the
configuration with the port widths of the RTL (``rows`` activations and
``cols`` codes in per cycle, ``cols`` results out per cycle). Operands are
taken as resident on chip (no DRAM level): for the bundled models on the
default 64 KiB buffers, ``accel perf`` keeps every intermediate map and all
weights on chip too, so both sides count compute, MACs and buffer traffic
only. Per-byte buffer energies and the MAC energy (multiply + 32-bit add) are
ours (``EnergyTable``, SRAM scaled with the buffer size as ``accel perf``
does), so energy differences come from counted events, not from the tables.

A last column prices our core with shadow accumulators (a proposed RTL change,
see ``shadow_accumulator_cycles``). Writes ``bench/zigzag_results.json`` (per
layer, with the machine and the ZigZag version; ``--force`` replaces it) and
prints the markdown table of ``docs/PERF.md``. This script runs itself under
the ZigZag interpreter for the ZigZag part; ``ZIGZAG_LOG=1`` shows ZigZag's
warnings and errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ZIGZAG_PYTHON = "/tmp/zigzag-venv/bin/python"
SETUP_HINT = ("python3 -m venv /tmp/zigzag-venv && "
              "/tmp/zigzag-venv/bin/pip install zigzag-dse==3.9.1 six==1.17.0")


# ---------------------------------------------------------------- ZigZag side (runs under its interpreter)

def _port(name: str, kind: str, bits_min: int, bits_max: int, allocation: list[str]) -> dict:
    return {"name": name, "type": kind, "bandwidth_min": bits_min, "bandwidth_max": bits_max,
            "allocation": allocation}


def _register(bits: int, operand: str, served: list[str], *, output: bool = False) -> dict:
    """A register in front of the MACs: free to access (``accel perf`` does not price pipeline registers)."""
    if output:
        ports = [_port("r_port_1", "read", bits, bits, ["O, tl"]), _port("r_port_2", "read", bits, bits, ["O, th"]),
                 _port("w_port_1", "write", bits, bits, ["O, fh"]), _port("w_port_2", "write", bits, bits, ["O, fl"])]
    else:
        ports = [_port("r_port_1", "read", bits, bits, [f"{operand}, tl"]),
                 _port("w_port_1", "write", bits, bits, [f"{operand}, fh"])]
    return {"size": bits, "r_cost": 0.0, "w_cost": 0.0, "area": 0, "latency": 1, "auto_cost_extraction": False,
            "operands": [operand], "ports": ports, "served_dimensions": served}


def _buffer(size_bits: int, pj_per_byte: float, operand: str, width_bits: int) -> dict:
    """An on-chip SRAM with ports of the RTL's width: ZigZag charges ``r_cost``/``w_cost`` per port-wide
    access, so a port of ``width_bits`` costs that many bytes at our per-byte energy."""
    if operand == "O":
        ports = [_port("w_port_1", "write", width_bits, width_bits, ["O, fl", "O, fh"]),
                 _port("r_port_1", "read", width_bits, width_bits, ["O, th", "O, tl"])]
    else:
        ports = [_port("r_port_1", "read", width_bits, width_bits, [f"{operand}, tl"]),
                 _port("w_port_1", "write", width_bits, width_bits, [f"{operand}, fh"])]
    cost = pj_per_byte * width_bits / 8
    return {"size": size_bits, "r_cost": cost, "w_cost": cost, "area": 0, "latency": 1,
            "auto_cost_extraction": False, "operands": [operand], "ports": ports, "served_dimensions": ["D1", "D2"]}


def zigzag_files(job: dict, folder: Path) -> tuple[Path, Path, Path]:
    """Accelerator, mapping and workload files for ZigZag (JSON, which its YAML reader takes)."""
    rows, cols, wbits, acc_bits = job["rows"], job["cols"], job["weight_bits"], job["acc_bits"]
    memories = {
        "reg_O": _register(acc_bits, "O", [], output=True),                # one accumulator per PE
        "reg_W": _register(wbits, "I2", ["D1"]),                           # a column's code, down its rows
        "reg_I": _register(8, "I1", ["D2"]),                               # a row's activation, across it
        "out_buf": _buffer(job["out_buffer_bits"], job["sram_pj"]["out"], "O", job["out_port_bits"]),
        "weight_buf": _buffer(job["weight_buffer_bits"], job["sram_pj"]["weight"], "I2", job["weight_port_bits"]),
        "act_buf": _buffer(job["act_buffer_bits"], job["sram_pj"]["act"], "I1", job["act_port_bits"]),
    }
    accelerator = {"name": f"accel_os_{rows}x{cols}", "memories": memories,
                   "operational_array": {"input_precision": [8, wbits], "unit_energy": job["mac_pj"],
                                         "unit_area": 1, "dimensions": ["D1", "D2"], "sizes": [rows, cols],
                                         "systolic_dimensions": ["D1", "D2"]}}
    # One mapping per GEMM (matched by layer name): a dimension smaller than the array is unrolled only as far
    # as it goes (ZigZag finds no loop order otherwise); our core idles the other rows/columns the same way.
    # The temporal loops are given in full (ZigZag's search finds no order for some of these GEMMs when given
    # "*" factors): K innermost, then pixel blocks, then column blocks, our tile order; a partial block costs a
    # whole iteration, as on our core. ZigZag also requires an entry named "default".
    mapping = [{"name": "default", "spatial_mapping": {"D1": [f"M, {rows}"], "D2": [f"N, {cols}"]},
                "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]
    for i, (m, n, k) in enumerate(job["gemms"]):
        loops = [["K", k], ["M", -(-m // rows)], ["N", -(-n // cols)]]
        mapping.append({"name": f"gemm{i}", "spatial_mapping": {"D1": [f"M, {min(m, rows)}"],
                                                                 "D2": [f"N, {min(n, cols)}"]},
                        "temporal_ordering": [loop for loop in loops if loop[1] > 1],
                        "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}})
    workload = [{"id": i, "name": f"gemm{i}", "operator_type": "Gemm", "equation": "O[m][n]+=I[m][k]*W[k][n]",
                 "loop_dims": ["M", "N", "K"], "loop_sizes": [m, n, k],
                 "operand_precision": {"W": wbits, "I": 8, "O": acc_bits, "O_final": job["out_bits"]},
                 "operand_source": {"W": i, "I": i}}
                for i, (m, n, k) in enumerate(job["gemms"])]
    paths = folder / "accelerator.yaml", folder / "mapping.yaml", folder / "workload.yaml"
    for path, data in zip(paths, (accelerator, mapping, workload)):
        path.write_text(json.dumps(data, indent=1))
    return paths


def run_zigzag(job: dict) -> list[dict]:
    """ZigZag's latency, energy and buffer accesses of each GEMM of ``job`` (one cost-model evaluation each)."""
    import contextlib
    import io
    import logging

    from zigzag.api import get_hardware_performance_zigzag
    from zigzag.mapping.data_movement import DataDirection

    # ZigZag logs every stage at INFO; ZIGZAG_LOG=1 keeps its warnings and errors (to see why a GEMM fails)
    logging.disable(logging.INFO if os.environ.get("ZIGZAG_LOG") else logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        accelerator, mapping, workload = zigzag_files(job, Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):
            _, _, cmes = get_hardware_performance_zigzag(
                str(workload), str(accelerator), str(mapping), opt="latency", dump_folder=str(Path(tmp) / "out"),
                loma_show_progress_bar=False)
    per_layer = sorted(cmes[0][1], key=lambda pair: pair[0].layer.id)
    results = []
    for cme, _ in per_layer:
        access = {}
        for layer_op, levels in cme.memory_word_access.items():
            top = levels[-1]  # the buffer level: reads towards the array, writes from it
            access[str(layer_op)] = {str(d): int(top.get(d)) for d in DataDirection if top.get(d)}
        results.append({
            "latency": int(math.ceil(cme.latency_total2)), "ideal_cycle": int(cme.ideal_cycle),
            "temporal_cycle": int(cme.ideal_temporal_cycle), "stall": float(cme.stall_slack_comb),
            "onloading": float(cme.data_onloading_cycle), "offloading": float(cme.data_offloading_cycle),
            "systolic_drain": float(cme.systolic_drain_cycle), "mac_pj": float(cme.mac_energy),
            "mem_pj": {str(op): float(sum(v)) for op, v in cme.mem_energy_breakdown.items()},
            "buffer_accesses": access, "temporal_mapping": str(cme.mapping.temporal_mapping)})
    return results


# ---------------------------------------------------------------- accel side


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", metavar="MODEL.qmodel",
                    help="integer models (default: the bundled models, quantized with the defaults)")
    ap.add_argument("--size", type=int, action="append", help="square array size (repeatable; default 8)")
    ap.add_argument("--zigzag-python", default=DEFAULT_ZIGZAG_PYTHON,
                    help=f"the interpreter of the ZigZag venv (default {DEFAULT_ZIGZAG_PYTHON})")
    ap.add_argument("--out", default=str(Path(__file__).with_name("zigzag_results.json")),
                    help="results JSON (default bench/zigzag_results.json)")
    ap.add_argument("--force", action="store_true", help="replace the results file if it exists")
    ap.add_argument("--zigzag-child", action="store_true", help=argparse.SUPPRESS)  # JSON job on stdin
    args = ap.parse_args()
    if args.zigzag_child:
        print(json.dumps(run_zigzag(json.load(sys.stdin))))
        return 0

    from accel.errors import AccelError
    try:
        return crosscheck(args)
    except AccelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def zigzag_version(python: str) -> str:
    """The installed zigzag-dse version; a one-line error naming the fix when the venv or the tool is missing."""
    from accel.errors import AccelError

    if not Path(python).is_file():
        raise AccelError(f"--zigzag-python {python}: no such interpreter; create the ZigZag venv: {SETUP_HINT}")
    probe = subprocess.run([python, "-c", "import importlib.metadata as m, zigzag.api; print(m.version('zigzag-dse'))"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise AccelError(f"--zigzag-python {python}: cannot import zigzag ({last}); install it: {SETUP_HINT}")
    return probe.stdout.strip()


def load_models(paths: list[str]) -> list[tuple[str, object]]:
    from accel.ir import load_model

    if paths:
        return [(Path(p).stem, load_model(p)) for p in paths]
    from accel.frontend import quantize_onnx
    from accel.frontend.workflow import MODELS_DIR, bundled_data, bundled_models

    return [(name, quantize_onnx(MODELS_DIR / f"{name}.onnx", bundled_data(MODELS_DIR / f"{name}.onnx")))
            for name in bundled_models()]


def zigzag_job(cfg, gemms: list[tuple[int, int, int]], out_bits: int) -> dict:
    """What the ZigZag side needs: the array, port widths, buffers and our per-event energies.

    ZigZag refuses a GEMM whose operand exceeds its top memory; the buffers are sized to hold the largest
    operand at least (its im2col matrix may exceed a map that fits), priced at the configured size.
    """
    from accel.perf.network import sram_pj_per_byte

    e = cfg.energy
    largest = {"act": max(8 * m * k for m, _, k in gemms),
               "weight": max(cfg.weight_bits * n * k for _, n, k in gemms),
               "out": max(out_bits * m * n for m, n, _ in gemms)}
    job = {"gemms": gemms, "rows": cfg.rows, "cols": cfg.cols, "weight_bits": cfg.weight_bits,
           "acc_bits": cfg.acc_bits, "out_bits": out_bits, "mac_pj": e.mac_pj + e.acc_add_pj * cfg.acc_bits / 32,
           "act_port_bits": 8 * cfg.rows, "weight_port_bits": cfg.weight_bits * cfg.cols,
           "out_port_bits": out_bits * cfg.cols, "sram_pj": {}}
    for buf in ("act", "weight", "out"):
        size = getattr(cfg, f"{buf}_buffer_bytes")
        job[f"{buf}_buffer_bits"] = max(8 * size, largest[buf])
        job["sram_pj"][buf] = sram_pj_per_byte(e.sram_read_byte_pj, size)
    return job


def run_child(python: str, job: dict) -> list[dict]:
    """Run the ZigZag side of ``job`` under ``python``; a one-line error with ZigZag's last line on failure."""
    from accel.errors import ToolError

    proc = subprocess.run([python, __file__, "--zigzag-child"], input=json.dumps(job), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"ZigZag failed on a {job['rows']}x{job['cols']} array: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def price_gemms(python: str, cfg, wanted: dict[tuple[int, int, int, int], None]) -> dict:
    """ZigZag's result for every distinct (M, N, K, output bits), buffer accesses turned into bytes."""
    ports = {"I": 8 * cfg.rows, "W": cfg.weight_bits * cfg.cols}
    results = {}
    for out_bits in sorted({g[3] for g in wanted}):
        gemms = [g[:3] for g in wanted if g[3] == out_bits]
        job = zigzag_job(cfg, gemms, out_bits)
        width = {**ports, "O": out_bits * cfg.cols}
        for g, res in zip(gemms, run_child(python, job)):
            res["buffer_bytes"] = {op: sum(n for n in dirs.values()) * width[op] // 8
                                   for op, dirs in res["buffer_accesses"].items()}
            results[(*g, out_bits)] = res
    return results


def shadow_accumulator_cycles(problems, cfg) -> int:
    """Our cycles if each PE had a second (shadow) accumulator: a finished tile's results move to it in one
    cycle and drain while the next tile computes, so consecutive tiles' last beats need only ``rows`` cycles
    between them (the drain) instead of ``2 * rows + cols - 1``. A model of a proposed RTL change, not RTL."""
    from accel.compile import plan_tiles, schedule
    from accel.hw.timing import CoreTiming

    class ShadowTiming(CoreTiming):
        @property
        def min_last_interval(self) -> int:
            return self.drain_cycles

        @property
        def output_latency(self) -> int:  # a tile's own results take as long as before
            return CoreTiming.min_last_interval.fget(self) + self.requant_latency

    timing = ShadowTiming(**vars(CoreTiming.from_config(cfg)))
    return schedule(plan_tiles(problems, cfg), timing)[-1].last_out + 1


def layer_rows(name: str, model, cfg, zz: dict) -> list[dict]:
    """Both sides per conv/linear layer of ``model`` on ``cfg`` (ZigZag's GEMM results summed over groups)."""
    from accel.ir import MAC_OPS
    from accel.perf import array_work, estimate
    from accel.perf.cycles import shape_problems

    ours = {p.name: p for p in estimate(model, cfg).layers}
    rows = []
    for lay in (lay for lay in model.layers if lay.op in MAC_OPS):
        problems = shape_problems(model, lay)
        out_bits = 32 if lay.attrs["raw"] else 8
        theirs = [zz[(p.pixels, p.channels_out, p.depth, out_bits)] for p in problems]
        w = array_work(model, lay, cfg)
        energy = ours[lay.name].energy_pj

        def total(key: str, results: list[dict] = theirs) -> float:
            return sum(r[key] for r in results)

        def zz_bytes(op: str, results: list[dict] = theirs) -> int:
            return sum(r["buffer_bytes"].get(op, 0) for r in results)

        p = problems[0]
        rows.append({
            "model": name, "array": f"{cfg.rows}x{cfg.cols}", "layer": lay.name,
            "gemm": [p.pixels, p.channels_out, p.depth], "groups": len(problems), "macs": w.macs,
            "accel_cycles": w.cycles, "zigzag_cycles": int(total("latency")),
            "accel_shadow_accumulator_cycles": shadow_accumulator_cycles(problems, cfg),
            "zigzag_temporal_cycles": int(total("temporal_cycle")), "zigzag_stall_cycles": total("stall"),
            "zigzag_onload_offload_drain_cycles": total("onloading") + total("offloading") + total("systolic_drain"),
            "accel_mac_pj": energy["mac"] + energy["acc_add"], "zigzag_mac_pj": total("mac_pj"),
            "accel_act_read_bytes": w.data_beats * cfg.rows, "zigzag_act_read_bytes": zz_bytes("I"),
            "accel_code_read_bytes": w.data_beats * cfg.cols * cfg.weight_bits // 8,
            "zigzag_code_read_bytes": zz_bytes("W"),
            "accel_out_write_bytes": w.outputs * out_bits // 8, "zigzag_out_write_bytes": zz_bytes("O"),
            "accel_buffer_pj": energy["sram_act"] + energy["sram_weight"] + energy["sram_out"],
            "zigzag_buffer_pj": sum(sum(r["mem_pj"].values()) for r in theirs)})
    return rows


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "-"


def markdown(rows: list[dict]) -> str:
    head = ("| model | array | layer | GEMM M x N x K (x groups) | accel cycles | ZigZag cycles | accel / ZigZag "
            "| MAC energy accel / ZigZag | activation bytes accel / ZigZag | code bytes accel / ZigZag "
            "| output bytes accel / ZigZag | accel with shadow accumulators / ZigZag |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        m, n, k = r["gemm"]
        shape = f"{m} x {n} x {k}" + (f" (x {r['groups']})" if r["groups"] > 1 else "")
        lines.append(
            f"| {r['model']} | {r['array']} | {r['layer']} | {shape} | {r['accel_cycles']:,} | {r['zigzag_cycles']:,} "
            f"| {ratio(r['accel_cycles'], r['zigzag_cycles'])} | {ratio(r['accel_mac_pj'], r['zigzag_mac_pj'])} "
            f"| {ratio(r['accel_act_read_bytes'], r['zigzag_act_read_bytes'])} "
            f"| {ratio(r['accel_code_read_bytes'], r['zigzag_code_read_bytes'])} "
            f"| {ratio(r['accel_out_write_bytes'], r['zigzag_out_write_bytes'])} "
            f"| {ratio(r['accel_shadow_accumulator_cycles'], r['zigzag_cycles'])} |")
    return "\n".join(lines)


def crosscheck(args: argparse.Namespace) -> int:
    from accel.report import write_json
    from accel.report.files import check_output

    out = check_output(args.out, overwrite=args.force)  # before any work
    version = zigzag_version(args.zigzag_python)
    from accel.ir import MAC_OPS
    from accel.perf.cycles import shape_problems

    rows = []
    for name, model in load_models(args.models):
        for size in args.size or [8]:
            cfg = model.config.replace(rows=size, cols=size)
            wanted = {(p.pixels, p.channels_out, p.depth, 32 if lay.attrs["raw"] else 8): None
                      for lay in model.layers if lay.op in MAC_OPS for p in shape_problems(model, lay)}
            rows += layer_rows(name, model, cfg, price_gemms(args.zigzag_python, cfg, wanted))
    print(markdown(rows))
    write_json(out, {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cpus",
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "zigzag_dse": version,
                     "rows": rows}, overwrite=args.force, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
