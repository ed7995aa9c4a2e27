"""The post-training methods composed in the order that ``accel quantize`` runs them.

1. on the float graph: cross-layer equalization (power-of-two aware) and bias absorption;
2. calibration and weight quantization (nearest LUT level);
3. analytic bias correction on the float biases (layers fed by a BatchNorm'd layer);
4. emission of the integer model;
5. AdaRound (codes only), then multipoint (extra points on the residual of the final codes), then
   empirical bias correction on the integer biases, each layer by layer with the bit-exact engine
   computing each layer's input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...config import AcceleratorConfig
from ...errors import ConfigError
from ...ir import Model
from ..calibrate import calibrate
from ..graph import FloatGraph
from ..quantize import QuantizeOptions, default_config, emit_integer_model, quantize_layer_weights
from .adaround import DEFAULT_ITERS, adaround
from .bias_correction import analytic_bias_correction, empirical_bias_correction
from .equalize import absorb_biases, equalize
from .multipoint import multipoint

__all__ = ["BIAS_CORRECTION_MODES", "PTQOptions", "quantize_graph_ptq"]

#: ``auto``: analytic where the input comes from a BatchNorm'd layer, empirical elsewhere.
BIAS_CORRECTION_MODES = ("auto", "empirical", "analytic")


@dataclass(frozen=True)
class PTQOptions:
    """Which post-training methods run (all off: plain nearest rounding).

    Parameters
    ----------
    cle : bool
        Cross-layer equalization, power-of-two aware, with bias absorption.
    bias_correction : str or None
        One of :data:`BIAS_CORRECTION_MODES`, or ``None``.
    adaround : bool
    adaround_iters : int
        Adam steps per layer.
    multipoint : float
        Multipoint quantization: extra array columns per layer as a fraction of its output channels
        (0: off).
    """

    cle: bool = False
    bias_correction: str | None = None
    adaround: bool = False
    adaround_iters: int = DEFAULT_ITERS
    multipoint: float = 0.0

    def __post_init__(self) -> None:
        if self.bias_correction is not None and self.bias_correction not in BIAS_CORRECTION_MODES:
            raise ConfigError(f"bias correction {self.bias_correction!r} is not one of "
                              f"{', '.join(BIAS_CORRECTION_MODES)}")
        if self.adaround_iters < 1:
            raise ConfigError(f"adaround_iters {self.adaround_iters}: expected a positive number of iterations")
        if not 0 <= self.multipoint <= 4:
            raise ConfigError(f"multipoint {self.multipoint}: expected a fraction of output channels in 0..4")

    @property
    def active(self) -> bool:
        return self.cle or self.bias_correction is not None or self.adaround or self.multipoint > 0

    def describe(self) -> str:
        """``"CLE, AdaRound (500 iterations/layer), bias correction (auto)"``, in the order they run."""
        parts = ["CLE"] if self.cle else []
        if self.adaround:
            parts.append(f"AdaRound ({self.adaround_iters} iterations/layer)")
        if self.multipoint:
            parts.append(f"multipoint ({self.multipoint:g} extra columns per channel)")
        if self.bias_correction is not None:
            parts.append(f"bias correction ({self.bias_correction})")
        return ", ".join(parts) or "none"


@dataclass
class PTQReport:
    """What each method did (recorded in ``model.metadata["ptq"]``)."""

    steps: dict[str, object] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def quantize_graph_ptq(graph: FloatGraph, calib_x: np.ndarray, config: AcceleratorConfig | None = None,
                       options: QuantizeOptions | None = None, ptq: PTQOptions | None = None, *,
                       progress: bool = False) -> Model:
    """:func:`~accel.frontend.quantize.quantize_graph` with the post-training methods of ``ptq``.

    ``graph`` is changed in place by equalization and analytic bias correction. The calibration
    images that the methods see are the same seeded sample that calibration uses.
    """
    from ...data import sample

    config = config or default_config()
    options = options or QuantizeOptions()
    ptq = ptq or PTQOptions()
    x = sample(np.asarray(calib_x), options.calib_size, options.seed)
    report = PTQReport()
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        report.seconds[name] = round(now - clock, 3)
        clock = now

    if ptq.cle:
        eq = equalize(graph, power_of_two=True)
        report.steps["cle"] = {"pairs": len(eq.pairs), "sweeps": eq.sweeps, "relu6_as_relu": eq.relu6_replaced,
                               "absorbed_channels": absorb_biases(graph, x)}
        lap("cle")
    calib = calibrate(graph, x, method=options.calib_method, act_bits=config.act_bits, size=options.calib_size,
                      seed=options.seed, progress=progress)
    weights = quantize_layer_weights(graph, config, options, progress=progress)
    analytic = []
    if ptq.bias_correction in ("auto", "analytic"):
        analytic = analytic_bias_correction(graph, weights)
        report.steps["bias_correction_analytic"] = analytic
    model = emit_integer_model(graph, calib, config, options, progress=progress, weights=weights)
    lap("quantize")
    if ptq.adaround:
        results = adaround(model, graph, weights, x, iters=ptq.adaround_iters, seed=options.seed, progress=progress)
        report.steps["adaround"] = {name: {"mse_nearest": r.nearest, "mse_adaround": r.adaround,
                                           "codes_changed": round(r.changed, 4), "kept": r.kept}
                                    for name, r in results.items()}
        lap("adaround")
    if ptq.multipoint:
        points = multipoint(model, graph, weights, x, ptq.multipoint, seed=options.seed, progress=progress)
        report.steps["multipoint"] = {name: {"points": r.points, "budget": r.budget,
                                             "error_before": r.error_before, "error_after": r.error_after}
                                      for name, r in points.items()}
        lap("multipoint")
    if ptq.bias_correction in ("auto", "empirical"):
        skip = analytic if ptq.bias_correction == "auto" else ()
        removed = empirical_bias_correction(model, graph, weights, x, skip=skip, progress=progress)
        report.steps["bias_correction_empirical"] = removed
        lap("bias_correction")
    model.metadata["ptq"] = {"options": {"cle": ptq.cle, "bias_correction": ptq.bias_correction,
                                         "adaround": ptq.adaround, "adaround_iters": ptq.adaround_iters,
                                         "multipoint": ptq.multipoint},
                             **report.steps, "seconds": report.seconds}
    return model
