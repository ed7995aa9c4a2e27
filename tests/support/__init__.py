"""Shared test support: random cases, small models, the contract assertion (no tests here)."""
