"""mailroom's benchmarks: `python -m bench` (or `make bench`) runs them and writes BENCHMARKS.md."""
