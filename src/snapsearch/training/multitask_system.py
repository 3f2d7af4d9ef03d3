"""The multi-task system: one trunk trained for the gate and the embedding at once.

Loss = ``category_weight`` x cross-entropy (label smoothing) + ``embedding_weight`` x the configured
pytorch-metric-learning loss, on the embedder's M-per-product batches (they carry each image's category as
well), + ``domain_invariance.weight`` x the domain critics' loss on reversed gradients
(:mod:`~snapsearch.training.domain_critic`; 0 = off), + ``feature_preservation.weight`` x the disagreement
with a frozen copy of the pretrained trunk (:mod:`~snapsearch.training.feature_preservation`; 0 = off).
Selection: ``val/joint`` = the mean of the gate's validation accuracy and photo -> catalog R@1, so neither head
is chosen at the other's expense.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from snapsearch.models.multitask import MultiTaskNet
from snapsearch.retrieval.metrics import DEFAULT_KS
from snapsearch.training.category_eval import CategoryEvaluation, set_trunk_frozen
from snapsearch.training.domain_critic import DomainCritics
from snapsearch.training.embedder_system import build_loss
from snapsearch.training.feature_preservation import FeaturePreservation
from snapsearch.training.optim import START_EPOCH, configure_optimization
from snapsearch.training.retrieval_validation import QUERY_LOADER, RetrievalValidation

JOINT_METRIC = "val/joint"
# multitask.embedding_products: the metric loss on every product's images, or only on products with shopper
# photos in training (the others' catalog images then teach the category head alone)
EMBEDDING_SCOPES = ("all", "photographed")


class MultiTaskSystem(CategoryEvaluation):
    """Trains a :class:`MultiTaskNet`; ``forward`` gives category logits (test and predict passes)."""

    def __init__(
        self,
        backbone: dict[str, Any],
        categories: list[str],
        products: list[str],
        embedder: dict[str, Any],
        multitask: dict[str, Any],
        label_smoothing: float,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        channels_last: bool,
        retrieval_ks: tuple[int, ...] = DEFAULT_KS,
        selection_fold: tuple[int, ...] = (),
        photo_less: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.channels_last = channels_last
        self.model, self.preprocess = MultiTaskNet.build(
            backbone, categories, embedder["embedding_dim"], embedder["gem_p"]
        )
        self.metric_loss = build_loss(embedder["loss"], len(products), self.model.embedding_dim)
        self.miner = instantiate(embedder["miner"]) if embedder.get("miner") else None
        self.init_category_metrics(len(categories))
        self.retrieval = RetrievalValidation(self.model.embedding_dim, tuple(retrieval_ks), selection_fold)
        self.domain = self._domain_critics(multitask.get("domain_invariance"))
        # built while the trunk still holds its pretrained weights (a checkpoint restores the same teacher)
        # checkpoints older than the option have none; those older than within_domain compared across domains
        preservation = multitask.get("feature_preservation")
        self.preservation = (
            FeaturePreservation(self.model.trunk, preservation["targets"], preservation.get("within_domain", False))
            if preservation and preservation["weight"]
            else None
        )
        scope = multitask.get("embedding_products", "all")  # checkpoints older than the option trained on all
        if scope not in EMBEDDING_SCOPES:
            raise ValueError(f"multitask.embedding_products={scope!r}; use one of {EMBEDDING_SCOPES}")
        # products the metric loss leaves to the category head: none, or those trained without shopper photos
        self.register_buffer(
            "embedding_skips",
            torch.as_tensor(photo_less if scope == "photographed" else (), dtype=torch.long),
            persistent=False,
        )

    def _domain_critics(self, recipe: dict[str, Any] | None) -> DomainCritics | None:
        """The critics of ``multitask.domain_invariance`` (checkpoints older than it have none)."""
        if not recipe or not recipe["weight"]:
            return None
        widths = {"embedding": self.model.embedding_dim, "gate": int(self.model.trunk.num_features)}
        unknown = sorted(set(recipe["features"]) - set(widths))
        if unknown:
            raise ValueError(f"multitask.domain_invariance.features: unknown {unknown}; choose from {sorted(widths)}")
        return DomainCritics({f: widths[f] for f in recipe["features"]}, recipe["hidden"], recipe["gamma"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.heads(x)[0]

    def on_train_epoch_start(self) -> None:
        """Frozen trunk for the first epochs: both new heads learn before they can damage pretrained features."""
        frozen = self.current_epoch < self.hparams.multitask["freeze_backbone_epochs"]
        set_trunk_frozen(self.model.trunk.parameters(), self.model.trunk.modules(), frozen)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self.log_skipped(batch)
        if batch["image"].shape[0] == 0:
            return None
        logits, emb, pooled = self.model.training_outputs(batch["image"])
        category = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        keep = ~torch.isin(batch["product"], self.embedding_skips)
        embedding = self._metric_loss(emb[keep], batch["product"][keep])
        weights = self.hparams.multitask
        loss = weights["category_weight"] * category + weights["embedding_weight"] * embedding
        n = len(logits)
        if self.domain is not None:
            progress = self.global_step / max(1, self.trainer.estimated_stepping_batches)
            domain, critic_acc = self.domain.loss({"embedding": emb, "gate": pooled}, batch["photo"], progress)
            loss = loss + weights["domain_invariance"]["weight"] * domain
            self.log("train/loss_domain", domain, on_step=False, on_epoch=True, batch_size=n)
            self.log("train/domain_critic_acc", critic_acc, on_step=False, on_epoch=True, batch_size=n)
        if self.preservation is not None:
            preservation = self.preservation.loss(batch["image"], pooled, emb, batch["photo"])
            loss = loss + weights["feature_preservation"]["weight"] * preservation
            self.log("train/loss_preservation", preservation, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("train/loss_category", category, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss_embedding", embedding, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def _metric_loss(self, emb: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
        if len(emb) == 0:
            return emb.sum()  # zero, attached to the graph
        return self.metric_loss(emb, products, self.miner(emb, products) if self.miner is not None else None)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch["image"].shape[0] == 0:
            return
        logits, emb = self.model.heads(batch["image"])
        self.retrieval.add(dataloader_idx, emb, batch["product"], batch["row"])
        if dataloader_idx == QUERY_LOADER:
            self.val_metrics.update(self.calibrated(logits), batch["label"])

    def on_validation_epoch_end(self) -> None:
        category = {k: float(v) for k, v in self.val_metrics.compute().items()}  # synced over ranks
        self.val_metrics.reset()
        retrieval = self.retrieval.compute()
        if retrieval is None:
            return
        for name, value in {**category, **{f"val/{k}": v for k, v in retrieval.items()}}.items():
            self.log(name, value, prog_bar=name in ("val/acc", "val/R@1"), batch_size=1)
        self.log(JOINT_METRIC, (category["val/acc"] + retrieval["R@1"]) / 2, prog_bar=True, batch_size=1)

    def configure_optimizers(self) -> dict[str, Any]:
        base_lr = self.hparams.optimizer["lr"]
        recipe = self.hparams.multitask
        groups = [
            {"params": self.model.head_parameters(), "lr": base_lr},
            {
                "params": list(self.model.trunk.parameters()),
                "lr": base_lr * recipe["backbone_lr_scale"],
                START_EPOCH: recipe["freeze_backbone_epochs"],
            },
        ]
        if self.domain is not None:
            groups.append({"params": list(self.domain.parameters()), "lr": base_lr})
        loss_params = [p for p in self.metric_loss.parameters() if p.requires_grad]
        if loss_params:  # ArcFace class weights / proxies learn fastest
            groups.append({"params": loss_params, "lr": base_lr * self.hparams.embedder["loss_lr_scale"]})
        return configure_optimization(self.trainer, self.hparams.optimizer, self.hparams.scheduler, groups)
