"""One network priced several ways side by side, and the rows the CLI prints."""

from __future__ import annotations

from ..config import AcceleratorConfig
from ..ir import Model
from .network import ActivationStats, NetworkPerf, estimate, int8_baseline

__all__ = ["compare", "layer_rows", "LAYER_HEADER", "TOTALS_HEADER", "totals_row"]

LAYER_HEADER = ("layer", "op", "MACs", "cycles", "util", "mem-bound", "stall", "compute nJ", "SRAM nJ",
                "DRAM nJ", "static nJ", "bits/w", "sparsity", "coded/raw")
TOTALS_HEADER = ("design", "cycles", "time us", "uJ/inference", "TOPS/W", "inferences/s", "weight bytes",
                 "bits/w")

_GROUPS = (("mac", "acc_add", "lut", "requant", "vector"), ("sram_act", "sram_weight", "sram_out"), ("dram",),
           ("static",))


def _energy_nj(energy: dict[str, float]) -> tuple[str, ...]:
    """Compute, SRAM, DRAM and static energy in nanojoules."""
    return tuple(f"{sum(energy[k] for k in group) / 1e3:.2f}" for group in _GROUPS)


def compare(model: Model, config: AcceleratorConfig, stats: ActivationStats | None = None, *,
            gate_zero_macs: bool = False) -> list[NetworkPerf]:
    """The configured LUT datapath, plain int8 weights with ``multiply_shift``, and the configured
    datapath with activation coding toggled."""
    coding = "on" if not config.activation_coding else "off"
    return [estimate(model, config, stats, gate_zero_macs=gate_zero_macs, label="configured LUT datapath"),
            estimate(model, int8_baseline(config), stats, gate_zero_macs=gate_zero_macs, lut=False,
                     label="int8 weights, multiply_shift"),
            estimate(model, config.replace(activation_coding=not config.activation_coding), stats,
                     gate_zero_macs=gate_zero_macs, label=f"LUT datapath, activation coding {coding}")]


def _opt(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def layer_rows(perf: NetworkPerf) -> list[tuple[str, ...]]:
    """One row of :data:`LAYER_HEADER` per layer, then the totals."""
    rows = []
    for lay in perf.layers:
        op = f"{lay.op} +{lay.extra_columns} pts" if lay.extra_columns else lay.op  # multipoint: its extra columns
        rows.append((lay.name, op, f"{lay.macs:,}" if lay.macs else "", f"{lay.cycles:,}",
                     _opt(lay.utilization, ".1%"), "yes" if lay.memory_bound else "",
                     f"{lay.stall_cycles:,}" if lay.stall_cycles else "", *_energy_nj(lay.energy_pj),
                     _opt(lay.bits_per_weight, ".2f"),
                     _opt(lay.sparsity, ".1%"), _opt(lay.compression, ".2f")))
    stall = sum(lay.stall_cycles for lay in perf.layers)
    util = perf.macs / sum(lay.compute_cycles * perf.config.rows * perf.config.cols
                           for lay in perf.layers if lay.unit == "array")
    rows.append(("total", "", f"{perf.macs:,}", f"{perf.cycles:,}", f"{util:.1%}",
                 str(sum(lay.memory_bound for lay in perf.layers)), f"{stall:,}" if stall else "",
                 *_energy_nj(perf.energy_pj), f"{perf.bits_per_weight:.2f}", "", ""))
    return rows


def totals_row(perf: NetworkPerf) -> tuple[str, ...]:
    return (perf.label, f"{perf.cycles:,}", f"{perf.time_us:.2f}", f"{perf.energy_uj:.4f}",
            f"{perf.tops_per_watt:.3f}", f"{perf.inferences_per_s:,.0f}", f"{perf.weight_bytes:,}",
            f"{perf.bits_per_weight:.2f}")
