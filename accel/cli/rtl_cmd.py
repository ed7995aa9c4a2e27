"""``accel rtl generate``, ``verify`` and ``synth``: Verilog for a configuration; a model's layers on the RTL;
area and Fmax on an FPGA."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from ..report import Column, Table, check_output
from .args import non_negative_int, positive_float, positive_int

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtl", help="generate the Verilog of the MAC array; verify a model's layers on it",
                       description="Gateware commands: Verilog export and RTL simulation against the engine.")
    rtl = p.add_subparsers(dest="rtl_command", metavar="SUBCOMMAND", parser_class=type(p))
    g = rtl.add_parser("generate", help="write the Verilog and a port/parameter description",
                       description="Write accel_gemm_core.v (Amaranth export), accel_gemm_core.md and "
                                   ".json (ports, payload fields, timing) for a configuration.")
    g.add_argument("--config", metavar="CFG.toml", help="accelerator configuration (default: the defaults)")
    g.add_argument("-o", "--output", metavar="DIR", default="rtl/build", help="output folder (default rtl/build)")
    g.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall on the result")
    g.add_argument("--force", action="store_true", help="replace existing files in DIR (hand edits are lost)")
    g.add_argument("--top", choices=["core", "axi"], default="core",
                   help="core: accel_gemm_core (valid/ready streams); axi: accel_axi_top (AXI4-Stream in/out, "
                        "AXI4-Lite registers; docs/RTL.md)")
    g.set_defaults(func=run_generate)
    v = rtl.add_parser("verify", help="run a model's conv/linear layers on the RTL and compare with the engine",
                       description="Lower each conv2d/linear layer (im2col), run it on the exported Verilog "
                                   "under cocotb, compare every output with the engine and the cycles with "
                                   "the schedule. Exit status 1 on any mismatch.")
    v.add_argument("model", metavar="MODEL.qmodel")
    v.add_argument("--layer", action="append", metavar="NAME", help="only this layer (repeatable)")
    v.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    v.add_argument("--waves", action="store_true", help="record waveforms (VCD under Verilator, FST under Icarus)")
    v.add_argument("--json", action="store_true", help="print the results as one JSON object")
    v.add_argument("--images", type=positive_int, default=2, metavar="N", help="test images to run (default 2)")
    v.add_argument("--data", metavar="DATA", help="mnist5k, digits or an .npz (default: the bundled set that "
                                                  "fits the model input; random integers otherwise)")
    v.add_argument("--build-dir", metavar="DIR", help="cache folder for simulator builds and runs (default "
                                                      "$ACCEL_CACHE_DIR, else $XDG_CACHE_HOME/accel or ~/.cache/accel)")
    v.add_argument("--cycles", metavar="PATH", help="per-tile cycles file, never replaced without --force "
                                                    "(default build/rtl_cycles/<model>-<sim>.json, replaced "
                                                    "on every run)")
    v.add_argument("--force", action="store_true", help="replace an existing --cycles file")
    v.set_defaults(func=run_verify)
    from ..synth.targets import TARGETS

    s = rtl.add_parser("synth", help="synthesize and place-and-route the core: area and Fmax on an FPGA",
                       description="Synthesize the core with yosys and place and route it with nextpnr "
                                   "(YoWASP builds from PyPI): LUTs, flip-flops, carry cells, DSPs, RAMs, I/O, "
                                   "Fmax and the critical path. ECP5 runs out of context (no I/O buffers); "
                                   "iCE40 wraps the core in a five-pin scan wrapper. Results are cached "
                                   "under the user cache by the Verilog, target and tool versions.")
    s.add_argument("--config", metavar="CFG.toml", help="accelerator configuration (default: the defaults)")
    s.add_argument("--target", choices=list(TARGETS), default="ecp5-85k", help="FPGA (default ecp5-85k)")
    s.add_argument("--top", choices=["core", "axi"], default="core",
                   help="top level to synthesize: the core or the AXI top (default core)")
    s.add_argument("--freq", type=positive_float, metavar="MHZ",
                   help="clock constraint (default: the config's clock_mhz)")
    s.add_argument("--seed", type=non_negative_int, default=1,
                   help="nextpnr placement seed (default 1; Fmax moves a few percent from seed to seed)")
    s.add_argument("-o", "--output", metavar="DIR", help="also write synth-<target>.json and .md to DIR")
    s.add_argument("--json", action="store_true", help="print the results as one JSON object")
    s.add_argument("--force", action="store_true", help="replace existing files in DIR")
    s.add_argument("--build-dir", metavar="DIR", help="cache folder (default $ACCEL_CACHE_DIR, else "
                                                      "$XDG_CACHE_HOME/accel or ~/.cache/accel)")
    s.set_defaults(func=run_synth)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_generate(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..hw import generate_verilog

    config = load_config(args.config)
    paths = generate_verilog(config, args.output, overwrite=args.force, top=args.top)
    for kind, path in paths.items():
        print(f"wrote {path} ({kind})")
    if args.lint:
        from ..rtlsim.build import LINT_WAIVERS, lint_verilog

        clean, messages = lint_verilog(paths["verilog"])
        waived = ", ".join(LINT_WAIVERS)
        print(f"verilator --lint-only -Wall (waived: {waived}): {'clean' if clean else 'WARNINGS'}")
        if not clean:
            print(messages, file=sys.stderr)
            return 1
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..ir import load_model
    from ..rtlsim.verify import model_inputs, verify_model, write_cycles

    if args.force and not args.cycles:
        raise UsageError("--force replaces an existing --cycles file; give --cycles PATH "
                         "(the default file under build/ is replaced on every run)")
    # A file the user named is theirs: never replaced unasked. The default one is a build output.
    if args.cycles:
        cycles_path = check_output(args.cycles, overwrite=args.force)
    else:
        cycles_path = check_output(Path("build") / "rtl_cycles" / f"{Path(args.model).stem}-{args.sim}.json",
                                   overwrite=True, make_parents=True)
    model = load_model(args.model)
    x = model_inputs(model, args.data, args.images)
    reports = verify_model(model, x, layers=args.layer, sim=args.sim, waves=args.waves, cache=args.build_dir)
    write_cycles(reports, cycles_path, config=model.config, sim=args.sim, overwrite=args.force or not args.cycles)
    ok = all(r.ok for r in reports)
    waves_path = reports[0].waves if args.waves and reports else None
    if args.json:
        print(json.dumps({"model": str(args.model), "simulator": args.sim, "images": int(x.shape[0]),
                          "ok": ok, "cycles_file": str(cycles_path),
                          **({"waveform": str(waves_path)} if waves_path else {}),
                          "layers": [r.to_dict() for r in reports]}))
        return 0 if ok else 1
    table = Table([Column("layer"), Column("op"), Column("outputs", align="right"),
                   Column("mismatches", align="right"), Column("cycles", align="right"),
                   Column("schedule", align="right"), Column("tiles", align="right"),
                   Column("sim s", ".3f", "right"), Column("cycles/s", ",.0f", "right")],
                  [(r.layer, r.op, r.outputs, r.mismatches, r.cycles,
                    "exact" if r.cycles_exact else r.schedule_cycles, r.tiles, r.run_s,
                    r.cycles / max(r.run_s, 1e-9)) for r in reports])
    print(f"{args.model}: {x.shape[0]} image(s) on the {model.config.rows}x{model.config.cols} array "
          f"under {args.sim}")
    print(table.text())
    for r in reports:
        for m in r.first:
            print(f"mismatch: {m}")
        if r.checker_mismatches and not r.mismatches:
            print(f"mismatch: layer {r.layer!r}: {r.checker_mismatches} output beats differ in padding lanes")
    print(f"{'all outputs match the engine' if ok else 'MISMATCH'}; per-tile cycles in {cycles_path}")
    if waves_path:
        print(f"waveform: {waves_path}")
    return 0 if ok else 1


def run_synth(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..report import check_output_dir, write_text
    from ..synth import get_target, result_table, synthesize

    if args.force and not args.output:
        raise UsageError("--force replaces files in -o DIR; give -o DIR")
    if args.freq is not None and not args.freq > 0:
        raise UsageError(f"--freq {args.freq:g}: expected a clock above 0 MHz")
    config = load_config(args.config)
    target = get_target(args.target)
    stem = f"synth-{target.name}" if args.top == "core" else f"synth-{args.top}-{target.name}"
    names = [f"{stem}.json", f"{stem}.md"]
    paths = check_output_dir(args.output, names, overwrite=args.force) if args.output else None
    result = synthesize(config, target, freq_mhz=args.freq, cache=args.build_dir, progress=sys.stderr.isatty(),
                        top=args.top, seed=args.seed)
    table = result_table(result)
    title = (f"{result.array} {'core' if args.top == 'core' else 'AXI top'} on {result.device}"
             f"{' (out of context)' if result.out_of_context else ''}{' [cached]' if result.cached else ''}")
    if paths:
        write_text(paths[0], json.dumps(result.to_dict(), indent=2) + "\n", overwrite=args.force)
        write_text(paths[1], f"# {title}\n\n{table.markdown()}\n", overwrite=args.force)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(title)
        print(table.text())
    return 0
