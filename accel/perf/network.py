"""Cycles, memory traffic and energy of a whole integer model, layer by layer, for one inference.

The model (``docs/PERF.md`` states it with its assumptions):

* **compute**: conv/linear layers on the GEMM core, exactly as the RTL
  (:mod:`accel.perf.cycles`); other layers on the vector unit; layers run one
  after another.
* **memory**: an activation map stays in the activation buffer when it fits
  (``act_buffer_bytes``), otherwise it spills to DRAM (written once, read by
  each consumer; a conv/linear layer re-reads a spilled input once per column
  block, since tiles go column block outer). The model input is read from and
  the model outputs written to DRAM. Weights stay resident when all of the
  model's fit the weight buffer (loaded once, not per inference); otherwise each
  layer's are read per inference (once per pixel block when one column block's
  weights do not fit). With ``activation_coding`` the activation traffic is the
  coded size measured on data (:mod:`accel.perf.coding`).
* **roofline**: DRAM transfers overlap compute (double buffering); a layer
  whose DRAM cycles (bytes / ``dram_bytes_per_cycle``) exceed its compute
  cycles is memory-bound and stalls for the difference.
* **energy**: counted events times :class:`~accel.config.EnergyTable`;
  SRAM energy per byte scales with the square root of the buffer size
  (Horowitz's 8 KiB, 32 KiB and 1 MiB figures fit it within 15 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config import AcceleratorConfig, Requant
from ..errors import ConfigError
from ..ir import MAC_OPS, Model
from .cycles import array_work, point_epilogue_work, vector_work
from .footprint import weight_storage

__all__ = ["ActivationStats", "LayerPerf", "NetworkPerf", "ENERGY_PARTS", "code_bits", "estimate", "int8_baseline",
           "check_compatible", "stored_bits"]

#: Energy components, in report order.
ENERGY_PARTS = ("mac", "acc_add", "lut", "requant", "vector", "sram_act", "sram_weight", "sram_out", "dram",
                "static")

SRAM_REFERENCE_BYTES = 8 * 1024  #: the SRAM size of Horowitz's per-access figure


@dataclass
class ActivationStats:
    """Activation statistics measured through the engine (per image means), see :mod:`accel.perf.activations`."""

    images: int
    sparsity: dict[str, float] = field(default_factory=dict)     #: tensor -> fraction of zero values
    raw_bytes: dict[str, float] = field(default_factory=dict)    #: tensor -> bytes of the map
    coded_bytes: dict[str, float] = field(default_factory=dict)  #: tensor -> bytes coded (8-bit maps)
    im2col_zeros: dict[str, list[float]] = field(default_factory=dict)  #: MAC layer -> zero activations
    #:                                                                     of its im2col matrix, per group

    def ratio(self, tensor: str) -> float:
        """Coded / raw size of a map (1 where it is not coded)."""
        if tensor not in self.coded_bytes:
            return 1.0
        return self.coded_bytes[tensor] / self.raw_bytes[tensor]


@dataclass
class LayerPerf:
    name: str
    op: str
    unit: str                   #: "array", "vector" or "none"
    macs: int
    compute_cycles: int
    dram_bytes: float
    memory_cycles: float
    energy_pj: dict[str, float]
    utilization: float | None = None
    bits_per_weight: float | None = None
    weight_bytes: int = 0
    weights: int = 0
    sparsity: float | None = None        #: of the layer's output map (with data)
    compression: float | None = None     #: coded / raw of the output map (with data)
    gated_macs: int = 0
    epilogue_cycles: int = 0             #: the vector unit's shift-and-add of a multipoint layer's points
    extra_columns: int = 0               #: a multipoint layer's extra points (array columns)

    @property
    def memory_bound(self) -> bool:
        return self.memory_cycles > self.compute_cycles

    @property
    def stall_cycles(self) -> int:
        return max(0, math.ceil(self.memory_cycles) - self.compute_cycles)

    @property
    def cycles(self) -> int:
        return self.compute_cycles + self.stall_cycles

    @property
    def total_pj(self) -> float:
        return sum(self.energy_pj.values())

    def to_dict(self) -> dict:
        return {"layer": self.name, "op": self.op, "unit": self.unit, "macs": self.macs, "cycles": self.cycles,
                "compute_cycles": self.compute_cycles, "stall_cycles": self.stall_cycles,
                "memory_bound": self.memory_bound, "dram_bytes": self.dram_bytes,
                "utilization": self.utilization, "energy_pj": self.total_pj,
                **{f"energy_{k}_pj": v for k, v in self.energy_pj.items()},
                "bits_per_weight": self.bits_per_weight, "weight_bytes": self.weight_bytes,
                "sparsity": self.sparsity, "compression": self.compression, "gated_macs": self.gated_macs,
                "extra_columns": self.extra_columns, "epilogue_cycles": self.epilogue_cycles}


@dataclass
class NetworkPerf:
    label: str
    config: AcceleratorConfig
    layers: list[LayerPerf]
    images: int = 0                      #: images the activation statistics come from (0: none)

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def time_us(self) -> float:
        return self.cycles / self.config.clock_mhz

    @property
    def energy_pj(self) -> dict[str, float]:
        return {k: sum(layer.energy_pj[k] for layer in self.layers) for k in ENERGY_PARTS}

    @property
    def energy_uj(self) -> float:
        return sum(self.energy_pj.values()) / 1e6

    @property
    def tops_per_watt(self) -> float:
        """Two operations per useful MAC per picojoule = tera-operations per second per watt."""
        return 2 * self.macs / (self.energy_uj * 1e6)

    @property
    def inferences_per_s(self) -> float:
        return 1e6 / self.time_us

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def bits_per_weight(self) -> float:
        """All parameter bits (codes, tables, shifts, biases, multipliers) per weight."""
        weights = sum(layer.weights for layer in self.layers)
        return self.weight_bytes * 8 / weights if weights else 0.0

    def totals(self) -> dict:
        return {"label": self.label, "cycles": self.cycles, "time_us": self.time_us, "macs": self.macs,
                "energy_uj": self.energy_uj, "tops_per_watt": self.tops_per_watt,
                "inferences_per_s": self.inferences_per_s, "weight_bytes": self.weight_bytes,
                "bits_per_weight": self.bits_per_weight, "stall_cycles": sum(x.stall_cycles for x in self.layers),
                "energy_pj": self.energy_pj, "images": self.images}

    def inference_summary(self) -> dict:
        """The few numbers that ``accel eval`` and ``accel demo`` print beside the accuracy."""
        cfg = self.config
        return {"array": f"{cfg.rows}x{cfg.cols}", "clock_mhz": cfg.clock_mhz, "cycles": self.cycles,
                "time_us": round(self.time_us, 3), "energy_uj": round(self.energy_uj, 4),
                "bits_per_weight": round(self.bits_per_weight, 3)}

    def to_dict(self) -> dict:
        return {"totals": self.totals(), "config": self.config.to_dict(),
                "layers": [layer.to_dict() for layer in self.layers]}


def check_compatible(model: Model, config: AcceleratorConfig, source: str = "config") -> None:
    """``config`` can price ``model``: the fields that shape its arrays are the model's."""
    for name in ("weight_bits", "requant"):
        mine, theirs = getattr(config, name), getattr(model.config, name)
        if mine != theirs:
            show = lambda v: getattr(v, "value", v)  # noqa: E731
            raise ConfigError(f"{source}: field {name!r} is {show(mine)!r} but the model was quantized for "
                              f"{show(theirs)!r}; quantize it again for this configuration")


def sram_pj_per_byte(per_byte: float, buffer_bytes: int) -> float:
    """Energy per byte of an SRAM of ``buffer_bytes``: the table's figure (for the reference size)
    scaled by the square root of the size (a bit line's length grows with it)."""
    return per_byte * math.sqrt(buffer_bytes / SRAM_REFERENCE_BYTES)


def _tensor_bytes(model: Model, name: str) -> int:
    info = model.tensors[name]
    return math.prod(info.shape) * (4 if info.dtype == "int32" else 1)


def stored_bits(model: Model) -> dict[str, int]:
    """Bits per value of every tensor as it would be stored packed: what its range needs.

    A requantizing layer's output needs ``ceil(log2(hi - lo + 1))`` bits, raw accumulators 32, the
    input ``act_bits``; data movement keeps its inputs' width. Mixed-precision models
    (:mod:`accel.precision`) narrow ``lo``/``hi`` per layer.
    """
    bits = {t: model.config.act_bits for t in model.inputs}
    for lay in model.layers:
        if model.tensors[lay.output].dtype == "int32":
            bits[lay.output] = 32
        elif "lo" in lay.attrs and lay.op not in ("max_pool",):
            bits[lay.output] = max(1, math.ceil(math.log2(int(lay.attrs["hi"]) - int(lay.attrs["lo"]) + 1)))
        else:
            bits[lay.output] = max(bits[t] for t in lay.inputs)
    return bits


def code_bits(layer) -> int:
    """Bits a MAC layer's weight codes need: ``ceil(log2)`` of the most distinct levels in one LUT row."""
    lut = np.asarray(layer.arrays["lut"])
    distinct = max(len(np.unique(row)) for row in lut)
    return max(1, math.ceil(math.log2(max(distinct, 2))))


def estimate(model: Model, config: AcceleratorConfig | None = None, stats: ActivationStats | None = None, *,
             gate_zero_macs: bool = False, lut: bool = True, label: str = "", packed: bool = False) -> NetworkPerf:
    """Per-layer and total cost of one inference of ``model`` on ``config`` (default: the model's).

    Parameters
    ----------
    stats : ActivationStats, optional
        Measured activations: sparsity, coded sizes (used for DRAM traffic when
        ``activation_coding`` is on) and zero activations (for ``gate_zero_macs``).
    gate_zero_macs : bool
        MACs whose activation is zero cost no multiply or add energy (padding
        lanes always; real zeros when ``stats`` are given).
    lut : bool
        False prices plain ``weight_bits`` weights with no table (no LUT storage,
        decodes or load cycles): the int8 baseline of :func:`int8_baseline`.
    packed : bool
        Price activation maps and weight-code reads at the width each tensor and layer needs
        (:func:`stored_bits`, :func:`code_bits`) rather than a byte per activation and
        ``weight_bits`` per code: the memory cost of per-layer mixed precision (the array's MACs
        cost the same at any width).
    """
    cfg = config or model.config
    if lut:  # the int8 baseline prices the model's layer shapes under another weight format
        check_compatible(model, cfg)
    e = cfg.energy
    mac_layers = [lay for lay in model.layers if lay.op in MAC_OPS]
    storages = {lay.name: weight_storage(lay, cfg, lut=lut) for lay in mac_layers}
    resident = sum(s.total_bytes for s in storages.values()) <= cfg.weight_buffer_bytes
    consumers: dict[str, int] = {}
    for lay in model.layers:
        for t in lay.inputs:
            consumers[t] = consumers.get(t, 0) + 1
    coding = cfg.activation_coding and stats is not None
    widths = stored_bits(model) if packed else {}

    def width(t: str) -> float:
        """Bytes per value of tensor ``t`` relative to one byte (1 unless ``packed``)."""
        return widths[t] / 8 if packed and widths[t] != 32 else 1.0

    def tensor_bytes(t: str) -> float:
        return _tensor_bytes(model, t) * width(t)

    def spilled(t: str) -> bool:
        return t in model.inputs or t in model.outputs or tensor_bytes(t) > cfg.act_buffer_bytes

    def dram_bytes(t: str) -> float:
        raw = tensor_bytes(t)
        return raw * stats.ratio(t) if coding else raw

    sram = {"act": sram_pj_per_byte(e.sram_read_byte_pj, cfg.act_buffer_bytes),
            "weight": sram_pj_per_byte(e.sram_read_byte_pj, cfg.weight_buffer_bytes),
            "out": sram_pj_per_byte(e.sram_read_byte_pj, cfg.out_buffer_bytes)}
    sram_w = {k: sram_pj_per_byte(e.sram_write_byte_pj, getattr(cfg, f"{k}_buffer_bytes")) for k in sram}
    layers = []
    for lay in model.layers:
        energy = dict.fromkeys(ENERGY_PARTS, 0.0)
        out_bytes = tensor_bytes(lay.output)
        act_reads = act_writes = 0.0
        dram = 0.0
        moves_data = lay.op not in ("flatten", "reshape")  # these only rename a buffer
        for t in lay.inputs:
            if moves_data and spilled(t):
                dram += dram_bytes(t)
                act_writes += tensor_bytes(t)
        if moves_data and spilled(lay.output):
            dram += dram_bytes(lay.output)
        elif moves_data:
            act_writes += out_bytes
        perf = LayerPerf(lay.name, lay.op, "none", 0, 0, 0.0, 0.0, energy)
        if stats is not None and lay.output in stats.sparsity:
            perf.sparsity = stats.sparsity[lay.output]
            perf.compression = stats.ratio(lay.output) if lay.output in stats.coded_bytes else None
        if lay.op in MAC_OPS:
            w = array_work(model, lay, cfg, lut_loads=lut)
            st = storages[lay.name]
            x = lay.inputs[0]
            if spilled(x) and tensor_bytes(x) > cfg.act_buffer_bytes:
                dram += dram_bytes(x) * (w.col_blocks - 1)  # re-read once per further column block
            if not resident:
                block_fits = st.total_bytes / w.col_blocks <= cfg.weight_buffer_bytes
                dram += st.total_bytes * (1 if block_fits else w.pixel_blocks)
                energy["sram_weight"] += st.total_bytes * sram_w["weight"]
            gated = 0
            if gate_zero_macs:
                per_group = stats.im2col_zeros.get(lay.name, []) if stats else []
                # every activation is fed once per column block of its group
                fed = sum(per_group) * w.col_blocks / len(per_group) if per_group else 0.0
                zeros = w.padding_slots + fed
                gated = int(round(zeros * cfg.cols))
            live = w.issued_macs - gated
            energy["mac"] = live * e.mac_pj
            energy["acc_add"] = live * e.acc_add_pj * cfg.acc_bits / 32
            if lut:
                energy["lut"] = (w.data_beats * cfg.cols + w.lut_loads * cfg.lut_entries * cfg.cols) * e.lut_decode_pj
            raw = bool(lay.attrs["raw"])
            per = e.requant_pj + (e.requant_mult_pj if cfg.requant is Requant.MULTIPLY_SHIFT else 0.0)
            epilogue = point_epilogue_work(model, lay, cfg)
            if epilogue is not None:  # multipoint: raw columns out of the array, joined and rescaled after it
                energy["vector"] = epilogue.element_ops * e.vector_op_pj
                energy["requant"] = epilogue.requants * per
                raw_out = epilogue.reads * 4  # int32 accumulators, written by the array, read by the vector unit
                energy["sram_out"] += raw_out * (sram_w["out"] + sram["out"])
            elif not raw:
                energy["requant"] = w.outputs * per
            act_reads += w.data_beats * cfg.rows * width(x)
            tile_bits = cfg.acc_bits + cfg.max_shift.bit_length() + (
                cfg.mult_bits if cfg.requant is Requant.MULTIPLY_SHIFT else 0)
            codes = code_bits(lay) if packed and lut else cfg.weight_bits
            weight_read = (w.data_beats * cfg.cols * codes / 8 + w.tiles * cfg.cols * tile_bits / 8
                           + (w.lut_loads * cfg.lut_entries * cfg.cols if lut else 0))
            energy["sram_weight"] += weight_read * sram["weight"]
            energy["sram_out"] += out_bytes * (sram_w["out"] + sram["out"])  # written by the array, read out
            perf.unit, perf.macs, perf.compute_cycles = "array", w.macs, w.cycles
            if epilogue is not None:
                perf.compute_cycles += epilogue.cycles
                perf.epilogue_cycles = epilogue.cycles
            perf.utilization = w.macs / (w.cycles * cfg.rows * cfg.cols)
            perf.bits_per_weight, perf.weight_bytes, perf.weights = st.bits_per_weight, st.total_bytes, st.weights
            perf.extra_columns = lay.n_points
            perf.gated_macs = gated
        else:
            v = vector_work(model, lay, cfg)
            energy["vector"] = v.element_ops * e.vector_op_pj
            energy["requant"] = v.requants * (e.requant_pj + (e.requant_mult_pj if "pool" in lay.op else 0.0))
            act_reads += v.reads * (sum(map(width, lay.inputs)) / len(lay.inputs) if lay.inputs else 1.0)
            perf.unit = "vector" if v.cycles else "none"
            perf.compute_cycles = v.cycles
        energy["sram_act"] = act_reads * sram["act"] + act_writes * sram_w["act"]
        energy["dram"] = dram * e.dram_byte_pj
        perf.dram_bytes = dram
        perf.memory_cycles = dram / cfg.dram_bytes_per_cycle
        energy["static"] = e.leakage_mw * perf.cycles / cfg.clock_mhz * 1e3
        layers.append(perf)
    return NetworkPerf(label or ("LUT datapath" if lut else "int8 weights"), cfg, layers,
                       stats.images if stats else 0)


def int8_baseline(config: AcceleratorConfig) -> AcceleratorConfig:
    """The plain int8-weight design the LUT/shift core is compared with: 8-bit weights, ``multiply_shift``."""
    return config.replace(weight_bits=8, requant=Requant.MULTIPLY_SHIFT)
