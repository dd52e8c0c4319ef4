"""Validation of checkpoints against exact inference: one module per (target, oracle) pair."""
