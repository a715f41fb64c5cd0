"""runner's benchmark suite: `make bench` (= `.venv/bin/python -m benchmarks`) → docs/performance.md.

Performance is measured here, as ratios against baselines measured in the same run, and never
asserted with timers in tests (DESIGN.md §6). See `python -m benchmarks --help`.
"""
