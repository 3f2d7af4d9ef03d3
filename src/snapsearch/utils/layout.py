"""Where things live in a train run directory and in an export bundle: the one owner of those names.

A run directory (``python train.py``) and a bundle (``python export.py``) are both *sources* a cascade can be
opened from; the names below are the only place their files are spelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

STAGES = ("classifier", "embedder", "multitask", "query_type")
# The two ways a run holds a cascade: separate gate and embedder, or one multi-task network with both heads.
SEPARATE_STAGES = ("classifier", "embedder")
MULTITASK_STAGES = ("multitask",)
# The query-type head (photo / catalog-like / screenshot): trained after the models whose embeddings it reads.
QUERY_TYPE = "query_type"
MODEL_FILE = "model.json"
LABELS = "labels.json"
INDEX = "index"
HUBNESS = "hubness.npz"  # a bundle's hubness reference: the validation photos' embeddings
PROTOTYPE_SHIFT = "prototype_shift.npz"  # a bundle's catalog offsets (measured on the training photos)
NOVELTY = "novelty.npz"  # a bundle's novelty reference: training photos' embeddings and the bonus's ramp
SOURCE_CONFIG = "source_config.yaml"
LAST_CHECKPOINT = "last.ckpt"
STEP_CHECKPOINT = "step.ckpt"  # the filename of conf/callbacks/default.yaml's step_checkpoint
METRICS = "metrics.json"


@dataclass(frozen=True)
class RunDir:
    """A train run directory: resolved config, label map, one folder per trained stage, evaluations."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def config_tree(self) -> Path:
        return self.root / "config_tree.log"

    @property
    def labels(self) -> Path:
        return self.root / LABELS

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def augment_preview(self) -> Path:
        return self.root / "augment_preview.png"

    def stage(self, name: str) -> Path:
        """The folder of a trained stage (``classifier`` / ``embedder`` / ``multitask``)."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; a run directory holds {STAGES}")
        return self.root / name

    def has_model(self, name: str) -> bool:
        """Whether the stage finished: its model description is written last."""
        return (self.stage(name) / MODEL_FILE).is_file()

    def cascade_stages(self) -> tuple[str, ...]:
        """The stages whose models make the run's own cascade: the separate gate and embedder when it has
        them, else its multi-task network; refused (with the stages to train) when it has neither."""
        for stages in (SEPARATE_STAGES, MULTITASK_STAGES):
            if all(self.has_model(s) for s in stages):
                return stages
        raise FileNotFoundError(
            f"{self.root} holds no finished cascade: train stages=[classifier,embedder] or stages=[multitask] "
            f"into it (finished stages: {[s for s in STAGES if self.has_model(s)]})"
        )

    @property
    def query_type(self) -> Path:
        """The query-type head's folder (``stages=[..., query_type]``)."""
        return self.stage(QUERY_TYPE)

    def stage_config(self, name: str) -> Path:
        return self.stage(name) / "config.yaml"

    @property
    def evaluations(self) -> Path:
        return self.root / "evaluations"

    @property
    def catalog_changes(self) -> Path:
        """The live catalog's state when ``serve.py`` serves the run directory itself."""
        return self.root / "catalog-changes"

    def exists(self) -> bool:
        return self.labels.is_file() and self.config.is_file()


@dataclass(frozen=True)
class BundleDir:
    """An export bundle: checksummed models, label map, the training config, optionally the catalog index.

    Nothing inside it is ever edited: live catalog changes go to :attr:`catalog_changes`, *beside* it.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    @property
    def manifest(self) -> Path:
        return self.root / "bundle.json"

    @property
    def labels(self) -> Path:
        return self.root / LABELS

    @property
    def source_config(self) -> Path:
        return self.root / SOURCE_CONFIG

    @property
    def index(self) -> Path:
        return self.root / INDEX

    @property
    def query_type(self) -> Path:
        return self.root / QUERY_TYPE

    @property
    def hubness(self) -> Path:
        return self.root / HUBNESS

    @property
    def prototype_shift(self) -> Path:
        return self.root / PROTOTYPE_SHIFT

    @property
    def novelty(self) -> Path:
        return self.root / NOVELTY

    @property
    def evaluations(self) -> Path:
        return self.root.with_name(self.root.name + "-evaluations")

    @property
    def catalog_changes(self) -> Path:
        """The live catalog's state (products added or removed through the service), beside the bundle."""
        return self.root.with_name(self.root.name + "-catalog")


def resolve_source(run_dir: str | Path | None, bundle: str | Path | None) -> tuple[Path, DictConfig]:
    """The folder named by exactly one of ``run_dir=`` / ``bundle=``, and the training config it carries."""
    if (run_dir is None) == (bundle is None):
        raise ValueError("pass exactly one of run_dir=<train run directory> or bundle=<export bundle>")
    if bundle is not None:
        b = BundleDir(Path(bundle))
        root, labels, config = b.root, b.labels, b.source_config
    else:
        r = RunDir(Path(run_dir))  # type: ignore[arg-type]
        root, labels, config = r.root, r.labels, r.config
    if not labels.is_file() or not config.is_file():
        kind = "an export bundle" if bundle is not None else "a train run directory"
        raise FileNotFoundError(f"{root} is not {kind} (no {labels.name} / {config.name})")
    return root, OmegaConf.load(config)
