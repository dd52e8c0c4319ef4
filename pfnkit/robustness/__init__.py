"""Adversarial robustness of checkpoints and of exact inference on the same tasks."""
