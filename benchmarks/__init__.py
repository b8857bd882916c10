"""The performance suite: ``python -m benchmarks`` (benchmarks/run.py, docs/performance.md)."""
