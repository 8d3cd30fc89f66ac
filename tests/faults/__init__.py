"""Fault tier: the running service (supervisor and workers) under injected faults, one module per concern,
counting exact rows and offsets. The slowest tier; ``-m slow`` runs the long versions."""
