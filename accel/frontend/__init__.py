"""Quantization front end: trained networks in, integer models out."""
