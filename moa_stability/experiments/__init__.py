"""Orchestration: parameter sweeps on Dask and the cross-check of every method."""
