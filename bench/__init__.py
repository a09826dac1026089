"""Benchmarks: one script per figure, collected by ``python -m bench`` (see ``__main__``)."""
