"""Benchmarks: each module has ``run(config, workdir) -> dict``.

Run with ``python -m launch.benchmark --config=configs/benchmarks/<name>.py
--workdir=DIR``; ``experiments.BENCHMARKS`` lists the names.
"""
