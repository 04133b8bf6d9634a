"""The physics configs the stage programs extend (light: pydantic only, so ``nsbiflow-step`` imports fast).

``TrainConfig`` (one ensemble chunk) is declared here once (the fit's settings are the ``fit`` stage's config);
the stage configs in ``nsbiflow.stepcli`` subclass them, and ``steps/*/step.yaml`` is generated from those.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# default batch sizes: wide layers do enough work per event that a larger batch keeps the matmuls efficient
# (4x1000, 2 CPU cores: 27% -> 48% of the torch.mm limit on a loaded machine, 83% -> 90% on an idle one);
# small MLPs keep 512 (they converge in fewer epochs with it, and the toy's results do not change)
NARROW_BATCH = 512
WIDE_BATCH = 2048
WIDE_LAYER = 512


class TrainConfig(BaseModel):
    """Hyper-parameters of one ensemble chunk (the ``train-ratio`` stage's config extends this one)."""

    model_config = ConfigDict(extra="forbid")

    members: int = Field(4, gt=0, description="ensemble members in this chunk")
    seed: int = Field(0, description="seeds initialisation, folds and bootstrap")
    chunk: int = Field(0, ge=0, description="chunk index (member ids are unique across chunks)")
    hidden: list[int] = Field(default_factory=lambda: [64, 64, 64], description="hidden layer widths")
    activation: Literal["silu", "relu", "tanh"] = "silu"
    lr: float = Field(2e-3, gt=0, description="learning rate")
    batch_size: int | None = Field(
        0,
        ge=0,
        description=f"events per step; 0 = {WIDE_BATCH} for layers >= {WIDE_LAYER} wide, else {NARROW_BATCH}",
    )
    max_epochs: int = Field(40, gt=0)
    patience: int = Field(5, gt=0, description="early stopping patience (epochs without holdout improvement)")
    folds: int = Field(5, ge=2, description="K-fold holdout split; member i holds out fold (chunk*members+i) % folds")
    bootstrap: bool = Field(True, description="Poisson(1) bootstrap weights per member")
    weight_decay: float = Field(0.0, ge=0)
    mode: Literal["auto", "loop", "batched"] = Field(
        "auto",
        description="batched: members in one model (memory-bounded groups on CPU); loop: one at a time; auto: batched",
    )

    @property
    def effective_batch_size(self) -> int:
        """``batch_size``, or the width-aware default when it is 0 (or None)."""
        if self.batch_size:
            return self.batch_size
        return WIDE_BATCH if max(self.hidden, default=0) >= WIDE_LAYER else NARROW_BATCH
