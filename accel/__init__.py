"""accel: hardware/software co-design for low-bit LUT/shift neural-network accelerators."""

__version__ = "0.1.0"
