"""bevlib: a reproducible research suite for self-supervised pretraining in driving perception."""
__version__ = "0.1.0"
