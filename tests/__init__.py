"""The test suite, in tiers by folder: unit/ (no server), integration/ (PostgreSQL, Kafka, the service),
faults/ (the service under injected faults). The shared harness is in harness/."""
