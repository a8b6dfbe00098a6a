"""Benchmarks of moonshot against a no-state-machine baseline (issue 7). Run each
as a module from the repository root, e.g. `python -m bench.pipeline --json`."""
