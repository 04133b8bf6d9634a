"""Configurations of the reweighters, their closure gate and the toy generator (no torch, no scikit-learn:
the stage programs import these at start-up)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EnsembleConfig(BaseModel):
    """The members of a reweighter and how their training events are drawn."""

    model_config = ConfigDict(extra="forbid")

    members: int = Field(2, gt=0, description="ensemble members (each with its own holdout fold)")
    seed: int = Field(0, description="seeds initialisation, folds and bootstrap")
    folds: int = Field(5, ge=2, description="K-fold split; member m holds out fold m % folds")
    bootstrap: bool = Field(True, description="Poisson(1) bootstrap weights per member")


class DeepSetsConfig(EnsembleConfig):
    """Architecture and training of the Deep-Sets members."""

    phi: list[int] = Field(default_factory=lambda: [64, 64], description="hidden widths of the per-object Phi")
    latent: int = Field(32, gt=0, description="width of the per-object latent vector that is summed")
    head: list[int] = Field(default_factory=lambda: [64, 64], description="hidden widths of F (sum -> logit)")
    activation: str = Field("silu", description="silu, relu or tanh")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(2048, gt=0, description="events per step (large batches keep a GPU busy)")
    max_epochs: int = Field(40, gt=0, description="epochs at most")
    patience: int = Field(5, gt=0, description="epochs without holdout improvement before stopping")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay")


class BDTConfig(EnsembleConfig):
    """Boosting and ensemble settings of the BDT members."""

    max_iter: int = Field(300, gt=0, description="boosting iterations (trees) at most")
    learning_rate: float = Field(0.1, gt=0, description="shrinkage")
    max_leaf_nodes: int = Field(31, ge=2, description="leaves per tree")
    min_samples_leaf: int = Field(50, gt=0, description="events per leaf at least")
    l2_regularization: float = Field(0.0, ge=0, description="L2 regularisation of the leaf values")
    n_iter_no_change: int = Field(30, gt=0, description="iterations without holdout improvement before stopping")


class ClosureTolerances(BaseModel):
    """Declared tolerances of the closure gate; a diagnostic beyond one fails the stage."""

    model_config = ConfigDict(extra="forbid")

    max_chi2_ndf: float = Field(3.0, gt=0, description="shape chi2/ndf of every trained projection")
    max_chi2_ndf_untrained: float = Field(3.0, gt=0, description="shape chi2/ndf of every untrained projection")
    min_ks_pvalue: float = Field(1e-3, ge=0, lt=1, description="weighted KS p-value of every projection")
    max_auc_deviation: float = Field(0.02, gt=0, description="|AUC - 0.5| of the classifier two-sample test")
    max_norm_deviation: float = Field(0.05, gt=0, description="|reweighted yield of MC_a / yield of MC_b - 1|")
    min_ess_fraction: float = Field(0.05, ge=0, le=1, description="effective sample size / events of MC_a")


class ToyParameters(BaseModel):
    """The two configurations of the truth-known generator (``toy.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lambda_a: float = Field(4.0, gt=0, description="mean object multiplicity of configuration a")
    lambda_b: float = Field(4.5, gt=0, description="mean object multiplicity of configuration b")
    k_a: float = Field(0.025, gt=0, description="slope (1/GeV) of the exponential energy spectrum of a")
    k_b: float = Field(0.0227, gt=0, description="slope (1/GeV) of the exponential energy spectrum of b")
    eta_max: float = Field(2.5, gt=0, description="objects are uniform in eta within +-eta_max")
