"""Does the data pipeline keep the model fed? Training images/s with decode + user-photo augmentation in
DataLoader workers, against the same training step on a batch already in memory.

    python bench/train_throughput.py [--data grocery] [--workers 0 1 2] [--steps 20] [--out FILE.json]

Prints a table and writes JSON. The target (DESIGN.md §4): pipeline >= 85% of the model-only rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from record import save_results

from snapsearch.data.datamodule import SnapDataModule
from snapsearch.training.classifier_system import ClassifierSystem
from snapsearch.utils.resolvers import register_resolvers

ROOT = Path(__file__).resolve().parents[1]


def _config(data: str, model: str, overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}", f"model={model}", "paths.output_dir=/tmp", *overrides])
    return cfg


def _system(cfg, categories: list[str]) -> ClassifierSystem:
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    system = ClassifierSystem(
        plain(cfg.model.backbone),
        categories,
        plain(cfg.model.classifier),
        plain(cfg.model.optimizer),
        plain(cfg.model.scheduler),
        cfg.model.channels_last,
    )
    if cfg.model.channels_last:
        system.to(memory_format=torch.channels_last)
    return system.train()


def _step(system: ClassifierSystem, opt: torch.optim.Optimizer, batch: dict) -> None:
    x = batch["image"]
    if system.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = torch.nn.functional.cross_entropy(system(x), batch["label"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(system: ClassifierSystem, batches, steps: int, warmup: int) -> float:
    """Images per second over ``steps`` training steps after ``warmup`` steps."""
    opt = torch.optim.AdamW(system.parameters(), lr=1e-4)
    it = iter(batches)
    for _ in range(warmup):
        _step(system, opt, next(it))
    n, start = 0, time.perf_counter()
    for _ in range(steps):
        batch = next(it)
        _step(system, opt, batch)
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="grocery")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--override", nargs="*", default=[])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    args = ap.parse_args()

    cfg = _config(args.data, args.model, args.override)
    dm = SnapDataModule(cfg.data, cfg.augment, cfg.seed)
    system = _system(cfg, dm.labels.categories)
    dm.attach_preprocess(system.preprocess)
    first = next(iter(dm.train_dataloader()))
    forever = iter(lambda: first, None)
    rows = {"model_only": measure(system, forever, args.steps, args.warmup)}
    for w in args.workers:
        cfg.data.num_workers = w
        loader = dm.train_dataloader()

        def batches(loader=loader):
            while True:
                yield from loader

        rows[f"pipeline_workers_{w}"] = measure(system, batches(), args.steps, args.warmup)
    result = {
        "model": cfg.model.backbone.name,
        "batch_size": cfg.data.batch_size,
        "input_size": system.preprocess.input_size,
        "draft_decode": cfg.data.draft_decode,
        "images_per_s": rows,
        "pipeline_over_model_only": {k: v / rows["model_only"] for k, v in rows.items() if k != "model_only"},
    }
    print(f"{'setting':<22}{'images/s':>10}{'vs model-only':>15}")
    for k, v in rows.items():
        print(f"{k:<22}{v:>10.1f}{v / rows['model_only']:>14.0%}")
    save_results(args.out, result, torch=torch.__version__, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
