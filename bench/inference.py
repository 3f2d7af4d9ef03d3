"""Inference speed of a bundle's exported models against eager PyTorch.

    python bench/inference.py --run-dir RUN [--bundle RUN/bundle] [--photos GLOB] [--batches 1 8 32]
        [--repeats 30] [--rounds 1] [--ort-threads 2]

For each model of the bundle (classifier and embedder, or the one multi-task network): eager PyTorch,
TorchScript, onnxruntime fp32 and (when the bundle has them) onnxruntime int8, at each batch size: p50/p95
latency per batch, ms per image and images/s. The inputs are real photos under the model's preprocessing
contract when ``--photos`` is given (int8 activation ranges are calibrated on photos: random noise would
measure another workload), else random tensors. onnxruntime runs with the service's thread settings
(``--ort-threads`` intra-op, sequential, no spinning); runtimes alternate within each round. Prints a table,
writes JSON. Parity (max abs difference, top-1 agreement) is recorded in the bundle by export.py.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from record import save_results
from torch import nn

from snapsearch.data.image_io import read_rgb
from snapsearch.data.preprocess import Preprocess
from snapsearch.deploy.export import CalibratedClassifier, MultiTaskOutputs
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.embedder import ProductEmbedder
from snapsearch.models.multitask import MultiTaskNet
from snapsearch.runtime import threads
from snapsearch.runtime.bundle import read_bundle
from snapsearch.runtime.models import load_runner

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 3
MAX_PIXELS = 50_000_000


def _time(fn: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int) -> dict[str, float]:
    for _ in range(WARMUP):
        fn(batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - t)
    p50 = float(np.percentile(times, 50))
    return {
        "p50_ms": p50 * 1e3,
        "p95_ms": float(np.percentile(times, 95)) * 1e3,
        "ms_per_image": p50 * 1e3 / len(batch),
        "images_per_s": len(batch) / p50,
    }


def _eager(run_dir: Path, kind: str) -> nn.Module:
    if kind == "multitask":
        return MultiTaskOutputs(MultiTaskNet.load(run_dir / kind)[0]).eval()
    if kind == "classifier":
        return CalibratedClassifier(CategoryClassifier.load(run_dir / kind)[0]).eval()
    return ProductEmbedder.load(run_dir / kind)[0].eval()


def _inputs(contract: Preprocess, photos: list[str], n: int) -> np.ndarray:
    """``n`` inputs: real photos under ``contract`` (repeated if too few), else seeded random tensors."""
    if not photos:
        size = contract.input_size
        return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)
    transform = contract.eval_transform()
    images = [transform(image=read_rgb(p, max_pixels=MAX_PIXELS))["image"].numpy() for p in photos[:n]]
    return np.stack([images[i % len(images)] for i in range(n)]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--photos", default=None, help="a glob of real photos to time on (sorted, the first used)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=1, help="every runtime once per round, in turn")
    ap.add_argument("--ort-threads", type=int, default=2, help="onnxruntime intra-op threads (serve.yaml: 2)")
    ap.add_argument("--skip", nargs="*", default=[], help="runtimes to leave out (eager, torchscript, ...)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference.json"))
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    bundle = Path(args.bundle or run_dir / "bundle")
    meta = read_bundle(bundle)
    load_start = os.getloadavg()
    threads.apply(threads.ThreadSettings(args.ort_threads, 1, False, 1, 1, args.ort_threads))
    photos = sorted(glob.glob(args.photos)) if args.photos else []
    rows = []
    for kind, model_meta in meta["models"].items():
        eager = _eager(run_dir, kind)

        def eager_fn(batch: np.ndarray, module: nn.Module = eager) -> object:
            with torch.inference_mode():
                return module(torch.from_numpy(batch))

        runners = {"eager": eager_fn} | {
            fmt: load_runner(bundle / name, meta["input_name"]) for fmt, name in model_meta["files"].items()
        }
        runners = {fmt: fn for fmt, fn in runners.items() if fmt not in args.skip}
        inputs = _inputs(Preprocess.from_dict(model_meta["preprocess"]), photos, max(args.batches))
        for round_ in range(args.rounds):
            for bs in args.batches:
                for fmt, fn in runners.items():
                    r = _time(fn, inputs[:bs], args.repeats)
                    rows.append(r | {"model": kind, "runtime": fmt, "batch": bs, "round": round_})
                    print(
                        f"{kind:<11}{fmt:<12}batch {bs:>3}  p50 {r['p50_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms  "
                        f"{r['ms_per_image']:6.2f} ms/img  {r['images_per_s']:8.1f} img/s",
                        flush=True,
                    )
    save_results(
        args.out,
        {
            "bundle": str(bundle),
            "inputs": f"{len(photos)} photos ({args.photos})" if photos else "random tensors",
            "verification": {k: m["verification"] for k, m in meta["models"].items()},
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "results": rows,
        },
        torch=torch.__version__,
        ort_intra_op_threads=args.ort_threads,
    )


if __name__ == "__main__":
    main()
