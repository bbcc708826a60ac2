"""The presence benchmark; ``python bench/run.py`` runs it (see docs/benchmarks.md)."""
