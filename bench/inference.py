"""Inference speed of the exported models against eager PyTorch.

    python bench/inference.py --run-dir RUN [--bundle RUN/bundle] [--batches 1 32] [--repeats 30]

For the classifier and the embedder: eager PyTorch, TorchScript, onnxruntime fp32 and (when the bundle has
them) onnxruntime int8, at each batch size: p50/p95 latency per batch and images/s. Prints a table, writes
JSON. Parity (max abs difference, top-1 agreement) is recorded in the bundle by export.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from record import save_results

from snapsearch.deploy.export import CalibratedClassifier
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.embedder import ProductEmbedder
from snapsearch.runtime.bundle import read_bundle
from snapsearch.runtime.models import load_runner

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 3


def _time(fn, batch: np.ndarray, repeats: int) -> dict[str, float]:
    for _ in range(WARMUP):
        fn(batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - t)
    p50 = float(np.percentile(times, 50))
    return {"p50_ms": p50 * 1e3, "p95_ms": float(np.percentile(times, 95)) * 1e3, "images_per_s": len(batch) / p50}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference.json"))
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    bundle = Path(args.bundle or run_dir / "bundle")
    meta = read_bundle(bundle)
    classifier, _ = CategoryClassifier.load(run_dir / "classifier")
    embedder, _ = ProductEmbedder.load(run_dir / "embedder")
    eager = {"classifier": CalibratedClassifier(classifier).eval(), "embedder": embedder.eval()}
    rows = []
    for kind in ("classifier", "embedder"):
        files = meta["models"][kind]["files"]
        size = meta["models"][kind]["preprocess"]["input_size"]

        def eager_fn(batch: np.ndarray, kind: str = kind) -> np.ndarray:
            with torch.inference_mode():
                return eager[kind](torch.from_numpy(batch)).numpy()

        runners = {"eager": eager_fn} | {
            fmt: load_runner(bundle / name, meta["input_name"]) for fmt, name in files.items()
        }
        for bs in args.batches:
            batch = np.random.default_rng(0).standard_normal((bs, 3, size, size)).astype(np.float32)
            for fmt, fn in runners.items():
                r = _time(fn, batch, args.repeats) | {"model": kind, "runtime": fmt, "batch": bs}
                rows.append(r)
                print(
                    f"{kind:<11}{fmt:<12}batch {bs:>3}  p50 {r['p50_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms  "
                    f"{r['images_per_s']:8.1f} img/s",
                    flush=True,
                )
    save_results(
        args.out,
        {
            "bundle": str(bundle),
            "verification": {k: m["verification"] for k, m in meta["models"].items()},
            "results": rows,
        },
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )


if __name__ == "__main__":
    main()
