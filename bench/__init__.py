"""Benchmarks of the sink against baselines: `python -m bench` (see docs/performance.md).

Not part of the product and not imported by it; tests/test_bench_smoke.py keeps it working."""
