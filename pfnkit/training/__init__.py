"""Pretraining on Lightning: config, prior stream and DataModule, LightningModule, `pretrain`."""

from pfnkit.training.config import TrainConfig
from pfnkit.training.module import PFNLightningModule, warmup_cosine_schedule
from pfnkit.training.pretrain import PretrainResult, initial_model, pretrain, prior_borders
from pfnkit.training.stream import PriorDataModule, PriorStream

__all__ = [
    "PFNLightningModule",
    "PretrainResult",
    "PriorDataModule",
    "PriorStream",
    "TrainConfig",
    "initial_model",
    "pretrain",
    "prior_borders",
    "warmup_cosine_schedule",
]
