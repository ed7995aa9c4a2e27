"""`AcceleratorConfig`: fields, validation, TOML load and save."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Overflow", "Rounding", "Requant", "LutScope", "PeKind", "EnergyTable", "AcceleratorConfig",
           "load_config", "save_config"]


class Overflow(str, enum.Enum):
    """What the accumulator does when a sum leaves its ``acc_bits`` range."""
    WRAP = "wrap"          #: two's complement wrap-around (order-free)
    SATURATE = "saturate"  #: clamp after every addition, bias first, k ascending


class Rounding(str, enum.Enum):
    """Rounding of the requantization right shift."""
    HALF_UP = "half_up"  #: ``(v + 2^(s-1)) >> s``
    FLOOR = "floor"      #: ``v >> s``


class Requant(str, enum.Enum):
    """How accumulators are rescaled to the output type."""
    SHIFT = "shift"                    #: power-of-two scale: a rounding right shift
    MULTIPLY_SHIFT = "multiply_shift"  #: unsigned ``mult_bits`` multiplier, then the shift


class LutScope(str, enum.Enum):
    """Whether one weight LUT serves a whole layer or each output channel has its own."""
    LAYER = "layer"
    CHANNEL = "channel"


class PeKind(str, enum.Enum):
    """How a processing element turns a LUT value into a product (the values stay int8 weights)."""
    GENERAL = "general"      #: any int8 value: a multiplier
    SHIFT = "shift"          #: 0 or +-2^e: a shifter (power-of-two LUTs)
    SHIFT_ADD = "shift_add"  #: 0, +-2^a or +-(2^a + 2^b): two shifts and an add (APoT LUTs)


def _check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}.{name}: expected an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{owner}.{name}: {value} is out of range, allowed {lo}..{hi}")
    return value


_FLOAT_MAX = 1.7976931348623157e308  # the largest float: a larger int has no float value


def _check_float(owner: str, name: str, value: Any, lo: float, hi: float = math.inf) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value if isinstance(value, float) else 0.0) or abs(value) > _FLOAT_MAX):
        raise ConfigError(f"{owner}.{name}: expected a finite number, got {value!r}")
    if not lo <= value <= hi:
        bound = f">= {lo}" if hi == math.inf else f"in {lo}..{hi}"
        raise ConfigError(f"{owner}.{name}: {value} is out of range, allowed {bound}")
    return float(value)


def _check_enum(owner: str, name: str, value: Any, kind: type[enum.Enum]) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ConfigError(f"{owner}.{name}: {value!r} is not one of {allowed}") from None


@dataclass(frozen=True)
class EnergyTable:
    """Energy per event in picojoules (static power in milliwatts), read by :mod:`accel.perf`.

    Process node: 45 nm. Sources: Horowitz, "Computing's energy problem (and what
    we can do about it)", ISSCC 2014, table of integer operations and memories
    at 45 nm, 0.9 V (``[H]`` below); the rest are stated estimates. ``docs/PERF.md``
    lists every default with its source and how :mod:`accel.perf` scales it.
    """

    mac_pj: float = 0.2             #: one 8x8-bit multiply of a MAC [H: 8-bit multiply 0.2 pJ]
    acc_add_pj: float = 0.1         #: one 32-bit accumulator add, scaled by acc_bits/32 [H: 32-bit add 0.1 pJ]
    lut_decode_pj: float = 0.05     #: one read (or load) of a 16x8-bit LUT entry; estimate: an 8-bit
    #:                                 16:1 mux, between [H]'s 8-bit add (0.03) and 16-bit add (0.05)
    requant_pj: float = 0.2         #: one rounding shift and clamp of an output; estimate: two 32-bit
    #:                                 adds' worth [H: 32-bit add 0.1 pJ]
    requant_mult_pj: float = 1.6    #: the extra 32x16-bit multiply of ``multiply_shift``; estimate: half
    #:                                 of [H]'s 32-bit multiply (3.1 pJ), multiplier area ~ width product
    vector_op_pj: float = 0.05      #: one element operation of the vector unit (add, compare, window
    #:                                 sum) [H: 16-bit add 0.05 pJ]
    sram_read_byte_pj: float = 1.25   #: per byte of an 8 KiB SRAM [H: 10 pJ per 64-bit read]
    sram_write_byte_pj: float = 1.25  #: per byte of an 8 KiB SRAM (taken equal to a read)
    dram_byte_pj: float = 160.0     #: per byte of DRAM traffic [H: 1.3-2.6 nJ per 64 bits; low end]
    leakage_mw: float = 5.0         #: static power of the accelerator while it runs; an assumption
    #:                                 (no 45 nm source), scale it to the target

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_float("energy", f.name, getattr(self, f.name), 0.0)
            object.__setattr__(self, f.name, float(getattr(self, f.name)))


@dataclass(frozen=True)
class AcceleratorConfig:
    """The one description of an accelerator instance.

    Parameters
    ----------
    rows, cols : int
        Systolic array size: ``rows`` activation lanes by ``cols`` output channels.
    weight_bits : int
        Width of a stored weight code, 2..8 (default 4: a 16-entry LUT).
    lut_scope : LutScope
        ``channel`` (default: one LUT per output channel, loaded into that column's
        decoder; a layer may still share one table) or ``layer`` (one LUT per layer).
    pe_kind : PeKind
        ``general`` (default: a multiplier per PE), ``shift`` (LUT values 0 or +-2^e) or
        ``shift_add`` (0, +-2^a, +-(2^a + 2^b)): what the PEs can decode
        (:func:`accel.datapath.pe_decodable`); the front end fits its LUTs to it.
    act_bits : int
        Activation width, 2..8; activations are int8 or uint8 on the datapath.
    acc_bits : int
        Accumulator width, 8..32.
    overflow : Overflow
        ``wrap`` or ``saturate``.
    requant : Requant
        ``shift`` or ``multiply_shift``; ``mult_bits`` is the multiplier width (1..31).
    rounding : Rounding
        ``half_up`` or ``floor``.
    clock_mhz : float
        Target clock frequency.
    weight_buffer_bytes, act_buffer_bytes, out_buffer_bytes : int
        On-chip buffer sizes.
    vector_lanes, vector_latency : int
        The vector unit that runs the layers the MAC array does not (add, pools,
        concat): element operations per cycle, and pipeline latency in cycles per layer.
    dram_bytes_per_cycle : float
        DRAM bandwidth in bytes per clock cycle.
    activation_coding : bool
        Activation maps cross DRAM zero-run-length + Exp-Golomb coded (:mod:`accel.perf.coding`).
    energy : EnergyTable
        Energy per event.
    """

    rows: int = 8
    cols: int = 8
    weight_bits: int = 4
    # One table per output channel is the default: every array column has its own decoder,
    # so it costs only loading, and it keeps W4A8 (and W3A8) within a point of float on
    # every bundled model where a shared table does not (docs/RESULTS.md).
    lut_scope: LutScope = LutScope.CHANNEL
    pe_kind: PeKind = PeKind.GENERAL
    act_bits: int = 8
    acc_bits: int = 32
    overflow: Overflow = Overflow.WRAP
    requant: Requant = Requant.SHIFT
    mult_bits: int = 16
    rounding: Rounding = Rounding.HALF_UP
    clock_mhz: float = 100.0
    weight_buffer_bytes: int = 64 * 1024
    act_buffer_bytes: int = 64 * 1024
    out_buffer_bytes: int = 16 * 1024
    vector_lanes: int = 8
    vector_latency: int = 2
    dram_bytes_per_cycle: float = 8.0
    activation_coding: bool = False
    energy: EnergyTable = field(default_factory=EnergyTable)

    def __post_init__(self) -> None:
        own = "config"
        _check_int(own, "rows", self.rows, 1, 256)
        _check_int(own, "cols", self.cols, 1, 256)
        _check_int(own, "weight_bits", self.weight_bits, 2, 8)
        _check_int(own, "act_bits", self.act_bits, 2, 8)
        _check_int(own, "acc_bits", self.acc_bits, 8, 32)
        # mult_bits <= 31 keeps acc * M + 2^(s-1) inside int64 for every executor.
        _check_int(own, "mult_bits", self.mult_bits, 1, 31)
        for name, kind in (("lut_scope", LutScope), ("pe_kind", PeKind), ("overflow", Overflow),
                           ("requant", Requant), ("rounding", Rounding)):
            object.__setattr__(self, name, _check_enum(own, name, getattr(self, name), kind))
        object.__setattr__(self, "clock_mhz", _check_float(own, "clock_mhz", self.clock_mhz, 1e-3, 1e5))
        for name in ("weight_buffer_bytes", "act_buffer_bytes", "out_buffer_bytes"):
            _check_int(own, name, getattr(self, name), 1, 1 << 34)
        _check_int(own, "vector_lanes", self.vector_lanes, 1, 1 << 16)
        _check_int(own, "vector_latency", self.vector_latency, 0, 1 << 16)
        object.__setattr__(self, "dram_bytes_per_cycle",
                           _check_float(own, "dram_bytes_per_cycle", self.dram_bytes_per_cycle, 1e-6, 1e9))
        if not isinstance(self.activation_coding, bool):
            raise ConfigError(f"{own}.activation_coding: expected true or false, got {self.activation_coding!r}")
        if isinstance(self.energy, dict):
            object.__setattr__(self, "energy", _energy_from_dict(self.energy))
        elif not isinstance(self.energy, EnergyTable):
            raise ConfigError(f"config.energy: expected a table of energies, got {self.energy!r}")

    # Derived quantities: read these instead of recomputing them.
    @property
    def lut_entries(self) -> int:
        """Number of LUT entries (``2 ** weight_bits``)."""
        return 1 << self.weight_bits

    @property
    def max_shift(self) -> int:
        """Largest legal requantization shift."""
        if self.requant is Requant.SHIFT:
            return 31
        return self.acc_bits + self.mult_bits - 1

    @property
    def acc_min(self) -> int:
        return -(1 << (self.acc_bits - 1))

    @property
    def acc_max(self) -> int:
        return (1 << (self.acc_bits - 1)) - 1

    def act_range(self, signed: bool) -> tuple[int, int]:
        """Integer range of an activation of ``act_bits`` bits."""
        if signed:
            return -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
        return 0, (1 << self.act_bits) - 1

    def replace(self, **changes: Any) -> "AcceleratorConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, EnergyTable):
                value = dataclasses.asdict(value)
            out[f.name] = value
        return out

    def to_toml(self) -> str:
        """The configuration as TOML that :func:`load_config` (``--config``) reads back (energy table last)."""
        import tomli_w

        data = self.to_dict()
        energy = data.pop("energy")
        return tomli_w.dumps({**data, "energy": energy})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "AcceleratorConfig":
        """Build from a plain mapping (as read from TOML or a model manifest).

        Unknown keys are errors that name the key and the source.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table of fields, got {type(data).__name__}")
        _reject_unknown(source, "the configuration", data, cls, misplaced=(EnergyTable, "the [energy] table"))
        kwargs = dict(data)
        try:
            if "energy" in kwargs:
                kwargs["energy"] = _energy_from_dict(kwargs["energy"])
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _energy_from_dict(data: Any) -> EnergyTable:
    if not isinstance(data, dict):
        raise ConfigError(f"config.energy: expected a table, got {data!r}")
    _reject_unknown("energy", "the [energy] table", data, EnergyTable,
                    misplaced=(AcceleratorConfig, "the top level (or the [accelerator] table)"))
    return EnergyTable(**data)


def _reject_unknown(source: str, where: str, data: dict, kind: type, misplaced: tuple[type, str]) -> None:
    """Refuse keys that ``kind`` lacks, saying where a key that belongs elsewhere goes."""
    known = sorted(f.name for f in dataclasses.fields(kind))
    unknown = sorted(set(data) - set(known), key=str)
    if not unknown:
        return
    key = unknown[0]
    other_kind, other_place = misplaced
    if key in {f.name for f in dataclasses.fields(other_kind)}:
        hint = f"it belongs in {other_place}"
    else:
        hint = f"allowed: {', '.join(known)}"
    what = "table" if isinstance(data[key], dict) else "field"
    raise ConfigError(f"{source}: unknown {what} {key!r} in {where}; {hint}")


def load_config(path: str | os.PathLike | None) -> AcceleratorConfig:
    """Load a TOML accelerator description; ``None`` gives the defaults."""
    if path is None:
        return AcceleratorConfig()
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    # Either a flat file or one [accelerator] table holding everything: a sibling of
    # [accelerator] (say [energy]) would otherwise be dropped without a word.
    if "accelerator" in data:
        if not isinstance(data["accelerator"], dict):
            raise ConfigError(f"{path}: 'accelerator' must be a table ([accelerator]), got {data['accelerator']!r}")
        siblings = sorted(set(data) - {"accelerator"})
        if siblings:
            raise ConfigError(f"{path}: {siblings[0]!r} is outside the [accelerator] table; a file with "
                              f"[accelerator] holds every field inside it (energy as [accelerator.energy])")
        data = data["accelerator"]
    return AcceleratorConfig.from_dict(data, source=str(path))


def save_config(config: AcceleratorConfig, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``config`` as TOML, atomically. Refuses to replace an existing file unless ``overwrite``
    (:class:`~accel.errors.OutputError`, as for a missing or read-only folder)."""
    from ..report.files import write_text

    return write_text(path, config.to_toml(), overwrite=overwrite)
