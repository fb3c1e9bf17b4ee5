"""Experiment drivers, one module per paper; notebooks call these."""
