"""The cascade's latency overhead over global search, end to end per query at batch 1, with a catalog-sized pool.

    python bench/cascade_overhead.py --separate-run RUN --multitask-run RUN2 [--items 1000000]
                                     [--partitions 43] [--factory "IVF1024,Flat"] [--queries 200]

Three cascades on onnxruntime (the deployment runtime), each timed as ``global`` (embed, search the whole pool)
and ``top1`` (classify, embed, search the predicted partition only):

* ``separate``: the run's exported classifier and embedder (two networks);
* ``shared``: the separate run's classifier alone, its pooled features as the embedding (exported here as one
  two-output ONNX; its embedding is the trunk's width, so its pool is that wide);
* ``multitask``: the multi-task bundle, one network with both heads.

Per query: decode a real test photo, preprocess it, run the model(s), search. The search stage runs on
synthetic clustered unit vectors (``search_scale.make_catalog``) of the embedding's width, ``--items`` of them
in ``--partitions`` categories of Zipf-distributed sizes (a real catalog's skew: the largest ~10x the
median); the predicted category picks the partition (modulo their number). Overhead = top1 p50 / global p50 - 1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import onnxruntime as ort
import torch
from record import save_results
from search_scale import make_catalog

from snapsearch.data.image_io import read_rgb
from snapsearch.data.preprocess import Preprocess
from snapsearch.deploy.export import INPUT_NAME, export_onnx
from snapsearch.retrieval.faiss_factory import apply_search_params, train_index
from snapsearch.runtime.bundle import read_bundle
from snapsearch.runtime.models import SharedTrunkHeads, SharedTrunkRuntime, load_runner

ROOT = Path(__file__).resolve().parents[1]
K = 10
WARMUP = 5
MAX_PIXELS = 40_000_000  # conf/data/grocery.yaml's decode limit

Model = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # batch -> (probabilities, embedding)


def cascades(separate_run: Path, multitask_run: Path, tmp: Path) -> dict[str, tuple[Preprocess, Model, Model]]:
    """Per cascade: its contract, its global path (embedding only) and its top1 path (both outputs)."""
    out = {}
    meta = read_bundle(separate_run / "bundle")
    cls_m, emb_m = meta["models"]["classifier"], meta["models"]["embedder"]
    classify = load_runner(separate_run / "bundle" / cls_m["files"]["onnx"], meta["input_name"])
    embed = load_runner(separate_run / "bundle" / emb_m["files"]["onnx"], meta["input_name"])
    assert cls_m["preprocess"] == emb_m["preprocess"], "the bench decodes each photo once: one contract"
    out["separate"] = (
        Preprocess.from_dict(cls_m["preprocess"]),
        lambda x: (np.zeros(0), embed(x)[0]),
        lambda x: (classify(x)[0], embed(x)[0]),
    )
    shared = SharedTrunkRuntime.from_run_dir(separate_run)
    size = shared.classifier_preprocess.input_size
    path = tmp / "shared.onnx"
    export_onnx(SharedTrunkHeads(shared.classifier).eval(), torch.zeros(2, 3, size, size), path, ("p", "e"), 18)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    both = lambda x: tuple(session.run(None, {INPUT_NAME: x}))  # noqa: E731
    out["shared"] = (shared.classifier_preprocess, both, both)
    meta = read_bundle(multitask_run / "bundle")
    mt = meta["models"]["multitask"]
    joint = load_runner(multitask_run / "bundle" / mt["files"]["onnx"], meta["input_name"])
    out["multitask"] = (Preprocess.from_dict(mt["preprocess"]), joint, joint)
    return out


def _index(x: np.ndarray, factory: str, nprobe: int, train_sample: int, rng: np.random.Generator) -> faiss.Index:
    """An index of ``x`` trained on at most ``train_sample`` of its vectors (k-means on all of a 1M x 1280
    pool would take longer than the whole bench: the latency of a search does not depend on it)."""
    sample = x[rng.choice(len(x), min(len(x), train_sample), replace=False)]
    index = train_index(sample, factory, "ip", n_total=len(x)).index
    index.add(x)
    apply_search_params(index, nprobe, None)
    return index


def indexes(dim: int, n: int, n_parts: int, factory: str, nprobe: int, train_sample: int, seed: int):
    rng = np.random.default_rng(seed)
    x, part = make_catalog(n, n_parts, dim, rng)
    glob = _index(x, factory, nprobe, train_sample, rng)
    parts = [_index(np.ascontiguousarray(x[part == p]), factory, nprobe, train_sample, rng) for p in range(n_parts)]
    return glob, parts, np.bincount(part, minlength=n_parts)


def time_paths(photos, pre: Preprocess, paths: tuple[Model, Model], glob, parts) -> dict[str, dict[str, float]]:
    """Each photo through the global path, then through the top1 path (interleaved, so that drift in the
    machine's speed hits both alike); p50 / p95 per path after ``WARMUP`` photos."""
    transform = pre.eval_transform()
    global_path, top1_path = paths

    def one(path: str, name: str) -> float:
        t = time.perf_counter()
        x = transform(image=read_rgb(path, max_pixels=MAX_PIXELS))["image"].numpy()[None]
        if name == "global":
            _, emb = global_path(x)
            glob.search(np.ascontiguousarray(emb, dtype=np.float32), K)
        else:
            probs, emb = top1_path(x)
            parts[int(probs.argmax()) % len(parts)].search(np.ascontiguousarray(emb, dtype=np.float32), K)
        return time.perf_counter() - t

    times: dict[str, list[float]] = {"global": [], "top1": []}
    for i, path in enumerate(photos[:WARMUP] + photos):
        for name, kept in times.items():
            elapsed = one(path, name)
            if i >= WARMUP:
                kept.append(elapsed)
    result = {name: {f"p{q}_ms": float(np.percentile(v, q) * 1e3) for q in (50, 95)} for name, v in times.items()}
    result["overhead"] = result["top1"]["p50_ms"] / result["global"]["p50_ms"] - 1
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--separate-run", required=True, type=Path, help="a run with classifier, embedder and bundle/")
    ap.add_argument("--multitask-run", required=True, type=Path, help="a stages=[multitask] run with bundle/")
    ap.add_argument("--photos", type=Path, default=None, help="folder of query photos (default: Grocery test)")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=43)
    ap.add_argument("--factory", default="IVF1024,Flat")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--train-sample", type=int, default=32768, help="vectors each IVF index is trained on")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cascades", nargs="+", default=["separate", "shared", "multitask"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cascade_overhead.json"))
    args = ap.parse_args()
    root = args.photos or ROOT.parent / "shared" / "datasets" / "GroceryStoreDataset" / "dataset" / "test"
    photos = sorted(str(p) for p in root.rglob("*.jpg"))
    photos = [photos[i] for i in np.random.default_rng(args.seed).permutation(len(photos))[: args.queries]]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = cascades(args.separate_run, args.multitask_run, Path(tmp))
        built: dict[int, tuple] = {}
        for name, (pre, *paths) in ((n, m) for n, m in models.items() if n in args.cascades):
            probe = np.zeros((1, 3, pre.input_size, pre.input_size), np.float32)
            dim = int(paths[1](probe)[1].shape[1])
            if dim not in built:
                t = time.perf_counter()
                built[dim] = indexes(
                    dim, args.items, args.partitions, args.factory, args.nprobe, args.train_sample, args.seed
                )
                print(f"pool of {args.items} x {dim}: built in {time.perf_counter() - t:.0f} s", flush=True)
            glob, parts, sizes = built[dim]
            rows[name] = time_paths(photos, pre, tuple(paths), glob, parts) | {"embedding_dim": dim}
            r = rows[name]
            print(
                f"{name:<10} dim {dim:>5}  global p50 {r['global']['p50_ms']:7.2f} ms  top1 p50 "
                f"{r['top1']['p50_ms']:7.2f} ms  overhead {100 * r['overhead']:+6.1f}%",
                flush=True,
            )
    save_results(
        args.out,
        {"params": {k: str(v) for k, v in vars(args).items()}, "partition_sizes": sizes.tolist(), "results": rows},
        faiss=faiss.__version__,
        onnxruntime=ort.__version__,
    )


if __name__ == "__main__":
    main()
