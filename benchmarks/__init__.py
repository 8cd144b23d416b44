"""Speed and memory benchmarks of vcinr: ``python -m benchmarks.run`` (see docs/performance.md)."""
