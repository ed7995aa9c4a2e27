"""Post-training algorithms on the LUT datapath (issue 12): cross-layer equalization and bias
absorption (:mod:`.equalize`), bias correction (:mod:`.bias_correction`), AdaRound on the LUT grid
(:mod:`.adaround`), and the pipeline that composes them for ``accel quantize`` (:mod:`.pipeline`)."""
