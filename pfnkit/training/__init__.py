"""Pretraining on Lightning: config, prior stream and DataModule, LightningModule, `pretrain`."""

from pfnkit.training.config import TrainConfig
from pfnkit.training.module import PFNLightningModule
from pfnkit.training.pretrain import initial_model, pretrain, prior_borders, training_summary
from pfnkit.training.stream import PriorDataModule, PriorStream

__all__ = [
    "PFNLightningModule",
    "PriorDataModule",
    "PriorStream",
    "TrainConfig",
    "initial_model",
    "pretrain",
    "prior_borders",
    "training_summary",
]
