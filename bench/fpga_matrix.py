"""The FPGA comparison matrix of issue 11: PE kinds x arrays x accumulators x requantization.

Run from the repository root (hours on 2 shared cores: each 8x8 place and route takes minutes,
each 16x16 one tens of minutes)::

    .venv/bin/python bench/fpga_matrix.py                 # every run, cheapest first, then the docs
    .venv/bin/python bench/fpga_matrix.py --only 4x4,acc16   # runs whose label contains "4x4" or "acc16"
    .venv/bin/python bench/fpga_matrix.py --list          # what is done and what is pending; runs nothing
    .venv/bin/python bench/fpga_matrix.py --accuracy      # also the W4A8 top-1 of each PE kind's LUT family

Every run goes through :func:`accel.synth.synthesize` (yosys + nextpnr, cached under the user
cache by the Verilog, target, constraint and tool versions), one after another, so an
interrupted matrix resumes where it stopped and a finished one rewrites the docs at once. A
design that does not fit is not cached by the flow: its one-line error is kept in
``bench/fpga_matrix.json`` under the run's cache name, so it is not repeated until the gateware
changes. Accuracy (``--accuracy``) quantizes each bundled model with the PE kind's LUT family
(the front end's defaults otherwise) and evaluates it through the engine; cells are kept in
``bench/fpga_accuracy.json``. The generated section ``fpga-matrix`` of ``docs/FPGA.md`` (between
its markers) is rewritten after every run; a run not finished yet reads "pending".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from accel.config import AcceleratorConfig
from accel.errors import ToolError
from accel.report import Column, Table, write_json
from accel.report.sections import update_section
from accel.synth import FitError, SynthResult, get_target, run_name, synthesize

ROOT = Path(__file__).resolve().parent.parent
MEMO = ROOT / "bench" / "fpga_matrix.json"
ACCURACY = ROOT / "bench" / "fpga_accuracy.json"
DOC = ROOT / "docs" / "FPGA.md"
SECTION = "fpga-matrix"

#: The LUT family each PE kind decodes best (the W4A8 accuracy column); general keeps the default.
PE_LUT_FAMILY = {"general": "mse", "shift": "pot", "shift_add": "apot"}
PE_KINDS = tuple(PE_LUT_FAMILY)


@dataclass(frozen=True)
class Run:
    """One synthesis of the matrix: a target and the configuration fields that differ from the default."""

    target: str
    fields: dict = field(default_factory=dict)

    @property
    def config(self) -> AcceleratorConfig:
        return replace(AcceleratorConfig(), **self.fields)

    @property
    def label(self) -> str:
        c = self.config
        return (f"{self.target} {c.rows}x{c.cols} {c.pe_kind.value} acc{c.acc_bits} {c.requant.value}")


def _array(n: int, kind: str, **more) -> dict:
    return {"rows": n, "cols": n, "pe_kind": kind, **more}


#: Cheapest first: the iCE40 2x2s, the ECP5 4x4s, the 8x8s, then the 16x16s.
RUNS = (
    *[Run(t, _array(2, k)) for t in ("ice40-hx8k", "ice40-up5k") for k in PE_KINDS],
    *[Run("ecp5-85k", _array(4, k)) for k in PE_KINDS],
    *[Run("ecp5-85k", _array(8, k)) for k in PE_KINDS],
    Run("ecp5-85k", _array(8, "general", acc_bits=16)),
    Run("ecp5-85k", _array(8, "general", acc_bits=24)),
    Run("ecp5-85k", _array(8, "general", requant="multiply_shift")),
    *[Run("ecp5-85k", _array(16, k)) for k in PE_KINDS],
)


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def outcome(run: Run) -> SynthResult | str | None:
    """The run's result, its "does not fit" line, or None while it has not been run."""
    target = get_target(run.target)
    found = synthesize(run.config, target, cached_only=True)
    if found is not None:
        return found
    return _load(MEMO).get(run_name(run.config, target))  # read afresh: another instance may have added it


def synthesize_run(run: Run) -> None:
    """Synthesize one run (a cached one answers at once), printing its wall time; a misfit goes to the memo."""
    target = get_target(run.target)
    print(f"{run.label}: running", flush=True)
    start = time.monotonic()
    try:
        result = synthesize(run.config, target, progress=sys.stderr.isatty())
    except FitError as exc:
        write_json(MEMO, {**_load(MEMO), run_name(run.config, target): str(exc)}, overwrite=True, indent=1)
        print(f"{run.label}: {exc} ({time.monotonic() - start:.0f} s)", flush=True)
        return
    except ToolError as exc:  # a tool failure stays pending; the next run may succeed
        print(f"{run.label}: failed: {exc}", flush=True)
        return
    fmax = min(result.fmax_mhz.values(), default=0.0)
    print(f"{run.label}: {result.luts} LUT4, {result.ffs} FF, {result.dsp} DSP, {fmax:.1f} MHz "
          f"({'cached' if result.cached else f'{time.monotonic() - start:.0f} s'})", flush=True)


def arithmetic_key(config: AcceleratorConfig) -> str:
    """What decides a run's accuracy: the PE kind (its LUT family), the accumulator and the requantization."""
    return f"{config.pe_kind.value}|acc{config.acc_bits}|{config.requant.value}"


def lut_family_top1(config: AcceleratorConfig, model_names: list[str]) -> dict[str, float]:
    """W4A8 top-1 (%) of each bundled model quantized for ``config`` with its PE kind's LUT family."""
    from accel.data import load_dataset
    from accel.frontend.evaluate import evaluate
    from accel.frontend.quantize import QuantizeOptions, quantize_onnx
    from accel.frontend.workflow import MODELS_DIR, bundled_models

    index = bundled_models()
    scores = {}
    for name in model_names:
        data = index[name]["data"]
        family = PE_LUT_FAMILY[config.pe_kind.value]
        model = quantize_onnx(MODELS_DIR / f"{name}.onnx", data, config, QuantizeOptions(lut=family))
        scores[name] = round(evaluate(model, load_dataset(data, "test"), sqnr=False).quant_top1, 1)
        print(f"accuracy {arithmetic_key(config)} ({family}) {name}: {scores[name]}", flush=True)
    return scores


def _fmax(result: SynthResult) -> str:
    return f"{min(result.fmax_mhz.values()):.1f}" if result.fmax_mhz else ""


def _fits(result: SynthResult) -> str:
    used, available = result.logic_cells
    text = f"yes ({100 * used / max(available, 1):.0f}% logic"
    dsp = result.utilization.get("MULT18X18D") or result.utilization.get("ICESTORM_DSP")
    if dsp and dsp[0]:
        text += f", {dsp[0]} of {dsp[1]} DSP"
    return text + ")"


def matrix_rows(accuracy: dict, models: list[str]) -> list[tuple]:
    rows = []
    for run in RUNS:
        c, found = run.config, outcome(run)
        top1 = accuracy.get(arithmetic_key(c), {})
        acc_cell = " / ".join(f"{top1[m]:.1f}" if m in top1 else "-" for m in models) if top1 else "not measured"
        head = (c.pe_kind.value, f"{c.rows}x{c.cols}", c.acc_bits, c.requant.value, get_target(run.target).device)
        if isinstance(found, SynthResult):
            seconds = sum(found.seconds.values())
            rows.append((*head, found.luts, found.ffs, found.carry, found.dsp, _fmax(found), _fits(found),
                         f"{seconds / 60:.1f}", PE_LUT_FAMILY[c.pe_kind.value], acc_cell))
        else:
            fits = "pending" if found is None else "no: " + found.split("does not fit: ", 1)[-1]
            rows.append((*head, None, None, None, None, None, fits, None, PE_LUT_FAMILY[c.pe_kind.value], acc_cell))
    return rows


def write_markdown(accuracy: dict) -> None:
    from accel.frontend.workflow import bundled_models

    models = list(bundled_models())
    num = Column("", ",", "right")
    columns = [Column("PE kind"), Column("array"), Column("acc bits", align="right"), Column("requant"),
               Column("device"), replace(num, title="LUT4"), replace(num, title="FF"),
               replace(num, title="CCU2C / SB_CARRY"), replace(num, title="DSP"),
               Column("Fmax (MHz)", align="right"), Column("fits?"), Column("P&R (min)", align="right"),
               Column("LUT family"), Column(f"W4A8 top-1 (%): {' / '.join(models)}")]
    found = [f for f in map(outcome, RUNS) if isinstance(f, SynthResult)]
    versions = {name: version for f in found for name, version in f.tools.items()}
    tools = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    body = "\n".join([
        "### The matrix (generated by `bench/fpga_matrix.py`; do not edit by hand)",
        "",
        f"{len(found)} of {len(RUNS)} runs placed and routed ({tools}, seed 1); the rest read \"pending\" "
        "or name the resource that overflowed in nextpnr's utilisation report after packing (the run stops "
        "there). ECP5 out of context, iCE40 in the five-pin scan "
        "wrapper (its flip-flops in FF); constraint the config's `clock_mhz` (100 MHz); every other field "
        "the default configuration's. P&R (min) is yosys plus nextpnr on the loaded 2-core machine, not a "
        "benchmark. The top-1 columns are the PE kind's LUT family on the bundled models (W4A8, per-channel "
        "LUTs, the front end's defaults otherwise; `general` uses the default `mse` family).",
        "",
        Table(columns, matrix_rows(accuracy, models)).markdown(),
    ])
    update_section(DOC, SECTION, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the runs whose label contains one of these comma-separated texts")
    parser.add_argument("--list", action="store_true", help="show what is done and pending; run nothing")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite docs/FPGA.md from the caches")
    parser.add_argument("--accuracy", action="store_true", help="measure the missing accuracy cells first")
    args = parser.parse_args()
    accuracy = _load(ACCURACY)
    if args.list:
        for run in RUNS:
            found = outcome(run)
            state = ("pending" if found is None else found if isinstance(found, str)
                     else f"{found.luts} LUT4, {found.dsp} DSP, {_fmax(found)} MHz")
            print(f"{run.label:45s} {state}")
        return
    if args.accuracy and not args.markdown_only:
        from accel.frontend.workflow import bundled_models

        # The array size changes no result: one configuration per arithmetic.
        for key, config in {arithmetic_key(r.config): replace(r.config, rows=8, cols=8) for r in RUNS}.items():
            missing = [m for m in bundled_models() if m not in accuracy.get(key, {})]
            if missing:
                accuracy.setdefault(key, {}).update(lut_family_top1(config, missing))
                write_json(ACCURACY, accuracy, overwrite=True, indent=1)
    wanted = args.only.split(",") if args.only else [""]
    runs = [] if args.markdown_only else [r for r in RUNS if any(text in r.label for text in wanted)]
    for run in runs:
        if outcome(run) is None:
            synthesize_run(run)
            write_markdown(_load(ACCURACY))
    write_markdown(_load(ACCURACY))


if __name__ == "__main__":
    main()
