"""Benchmarks: side-by-side timings against named peers (``sparseconv bench ...``).

Not imported by ``import sparseconv``; the CLI loads them on demand.
"""
