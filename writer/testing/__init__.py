"""Plumbing shared by the tests and the benchmarks (no pytest here; nothing in the service uses it)."""
