"""The cocotb testbench, imported by the simulator's Python (not by accel itself)."""
