"""The cascade's latency overhead over global search, per query at batch 1, with a catalog-sized pool.

    python bench/cascade_overhead.py --separate-run RUN --multitask-run RUN2 [--items 1000000]
                                     [--partitions 43] [--factory "IVF1024,Flat"] [--target-recall 0.95]
                                     [--repeats 3] [--queries 200]
    (--separate-bundle DIR / --multitask-bundle DIR: a bundle exported elsewhere than RUN/bundle)

Cascades on onnxruntime (the deployment runtime), each timed as ``global`` (embed, search the whole pool),
``top1`` (classify, embed, search one partition only) and ``fusion`` (classify, embed, search the whole pool
for the strategy's candidates and re-rank them by the gate), so that each strategy's latency is its own:

* ``separate``: the exported classifier and embedder (two networks);
* ``shared``: the separate run's classifier alone, its pooled features as the embedding (exported here as one
  two-output ONNX; its embedding is the trunk's width, so its pool is that wide; needs ``--separate-run``);
* ``multitask``: the multi-task bundle, one network with both heads.

Per query: decode a real test photo and preprocess it (``prepare``), run the model(s) (``model``), search
(``search``); each stage is timed apart. The search runs in a pool of ``--items`` synthetic clustered unit
vectors of the embedding's width in ``--partitions`` partitions of Zipf-distributed sizes (bench/ivf_pool.py),
with a synthetic query (a noisy copy of an item of the partition the photo is routed to) so that recall@10
against exact search is measured on the timed queries; both paths search the same query vector. Routing:

* ``photo``: the partition the model predicts for the photo (its category number modulo the partitions):
  the traffic of the Grocery test photos, whatever the partitions' sizes;
* ``traffic``: a partition drawn with probability proportional to its size (queries follow the catalog).

Fairness: each photo's paths run in a random order; each index searches with the smallest nprobe that
reaches ``--target-recall`` on calibration queries (``--target-recall 0`` : ``--nprobe`` everywhere), and
the recall of the timed searches is reported beside their latency; ``--repeats`` rounds (photo order
reshuffled), cascades and routings interleaved within each round, the spread of the rounds reported.
Overhead = a strategy's p50 / global p50 - 1, end to end and of the search stage alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import ivf_pool
import numpy as np
import onnxruntime as ort
import torch
from record import save_results

from snapsearch.data.image_io import read_rgb
from snapsearch.data.preprocess import Preprocess
from snapsearch.deploy.export import INPUT_NAME, export_onnx
from snapsearch.retrieval.strategies import Fusion
from snapsearch.runtime.bundle import read_bundle
from snapsearch.runtime.models import SharedTrunkHeads, SharedTrunkRuntime, load_runner

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 5
MAX_PIXELS = 40_000_000  # conf/data/grocery.yaml's decode limit
PATHS = ("global", "top1", "fusion")
ROUTINGS = ("photo", "traffic")
STAGES = ("prepare", "model", "search", "total")

Model = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # batch -> (probabilities, embedding)
Cascade = tuple[Preprocess, dict[str, Model]]


def cascades(args: argparse.Namespace, tmp: Path) -> dict[str, Cascade]:
    """Per cascade: its contract and per path its model stage (global: embedding only; top1, fusion: both)."""
    out: dict[str, Cascade] = {}
    separate = args.separate_bundle or (args.separate_run / "bundle" if args.separate_run else None)
    if "separate" in args.cascades:
        meta = read_bundle(separate)
        cls_m, emb_m = meta["models"]["classifier"], meta["models"]["embedder"]
        classify = load_runner(separate / cls_m["files"]["onnx"], meta["input_name"])
        embed = load_runner(separate / emb_m["files"]["onnx"], meta["input_name"])
        assert cls_m["preprocess"] == emb_m["preprocess"], "the bench decodes each photo once: one contract"
        out["separate"] = (
            Preprocess.from_dict(cls_m["preprocess"]),
            {"global": lambda x: (np.zeros(0), embed(x)[0])}
            | dict.fromkeys(("top1", "fusion"), lambda x: (classify(x)[0], embed(x)[0])),
        )
    if "shared" in args.cascades:
        shared = SharedTrunkRuntime.from_run_dir(args.separate_run)
        size = shared.classifier_preprocess.input_size
        path = tmp / "shared.onnx"
        export_onnx(SharedTrunkHeads(shared.classifier).eval(), torch.zeros(2, 3, size, size), path, ("p", "e"), 18)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        both = lambda x: tuple(session.run(None, {INPUT_NAME: x}))  # noqa: E731
        out["shared"] = (shared.classifier_preprocess, dict.fromkeys(PATHS, both))
    if "multitask" in args.cascades:
        bundle = args.multitask_bundle or args.multitask_run / "bundle"
        meta = read_bundle(bundle)
        mt = meta["models"]["multitask"]
        joint = load_runner(bundle / mt["files"]["onnx"], meta["input_name"])
        out["multitask"] = (Preprocess.from_dict(mt["preprocess"]), dict.fromkeys(PATHS, joint))
    return out


def queries_for(photos: list[str], cascade: Cascade, pool: ivf_pool.Pool, seed: int) -> dict[str, tuple]:
    """Per routing: each photo's partition and query vector, drawn once (the same in every round). The
    ``photo`` routing classifies each photo once, untimed, for its partition."""
    pre, paths = cascade
    transform = pre.eval_transform()
    predicted = [
        int(paths["top1"](transform(image=read_rgb(p, max_pixels=MAX_PIXELS))["image"].numpy()[None])[0].argmax())
        for p in photos
    ]
    rng = np.random.default_rng(seed + 2)
    n = len(pool.parts)
    parts = {
        "photo": np.array(predicted) % n,
        "traffic": rng.choice(n, len(photos), p=pool.sizes / pool.sizes.sum()),
    }
    return {r: (ps, np.concatenate([ivf_pool.make_query(pool, int(p), rng) for p in ps])) for r, ps in parts.items()}


def time_round(photos: list[str], cascade: Cascade, pool: ivf_pool.Pool, routed: tuple, rng: np.random.Generator):
    """One round: the photos (after ``WARMUP`` untimed ones) in a random order, each through every path in a
    random order. Stage times in seconds per path, and the ids found per path in photo order."""
    pre, paths = cascade
    transform = pre.eval_transform()
    parts, queries = routed
    fusion = Fusion()  # conf/cascade/all.yaml's fusion: the class's defaults
    times = {path: {s: [] for s in STAGES} for path in PATHS}
    found = {path: np.empty((len(photos), ivf_pool.K), np.int64) for path in (*PATHS, "fusion_candidates")}
    order = list(rng.permutation(len(photos)))
    for step, i in enumerate(order[:WARMUP] + order):
        for path in rng.permutation(PATHS):
            t0 = time.perf_counter()
            x = transform(image=read_rgb(photos[i], max_pixels=MAX_PIXELS))["image"].numpy()[None]
            t1 = time.perf_counter()
            probs = paths[path](x)[0]
            t2 = time.perf_counter()
            q, candidates = queries[i : i + 1], None
            if path == "global":
                ids = ivf_pool.search_global(pool, q)
            elif path == "top1":
                ids = ivf_pool.search_partition(pool, q, parts[i])
            else:
                ids, candidates = ivf_pool.search_fusion(pool, q, probs, fusion)
            t3 = time.perf_counter()
            if step >= WARMUP:
                for s, v in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                    times[path][s].append(v)
                found[path][i] = ids
                if candidates is not None:
                    found["fusion_candidates"][i] = candidates
    return times, found


def _percentiles(times: dict) -> dict:
    row: dict = {
        path: {s: {f"p{q}_ms": float(np.percentile(v, q) * 1e3) for q in (50, 95)} for s, v in stages.items()}
        for path, stages in times.items()
    }
    for path in PATHS[1:]:
        for s in ("total", "search"):
            row[f"overhead_{path}_{s}"] = row[path][s]["p50_ms"] / row["global"][s]["p50_ms"] - 1
    return row


def _spread(rounds: list[dict]) -> dict:
    """Median, min and max over the rounds of each p50 / p95 and overhead."""

    def agg(values: list[float]) -> dict[str, float]:
        return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}

    out: dict = {k: agg([r[k] for r in rounds]) for k in rounds[0] if k.startswith("overhead_")}
    for path in PATHS:
        out[path] = {s: {q: agg([r[path][s][q] for r in rounds]) for q in ("p50_ms", "p95_ms")} for s in STAGES}
    return out


def _print(name: str, routing: str, s: dict, rec: dict) -> None:
    def m(d: dict) -> str:
        return f"{d['median']:6.2f} [{d['min']:.2f}-{d['max']:.2f}]"

    for path in PATHS:
        over = "" if path == "global" else f" ({100 * s[f'overhead_{path}_total']['median']:+.1f}%)"
        print(
            f"{name:<9} {routing:<7} {path:<6} total p50 {m(s[path]['total']['p50_ms'])} ms{over}, model "
            f"{m(s[path]['model']['p50_ms'])}, search {m(s[path]['search']['p50_ms'])}",
            flush=True,
        )
    print(
        f"{name:<9} {routing:<7} R@10 global {rec['global_vs_exact']:.3f} top1 {rec['top1_vs_exact_partition']:.3f} "
        f"(vs exact global {rec['top1_vs_exact_global']:.3f}) fusion candidates "
        f"{rec['fusion_candidates_vs_exact_global']:.3f}",
        flush=True,
    )


def build_pools(models: dict[str, Cascade], args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """Each cascade's embedding width, and one pool per width (built, nprobe calibrated)."""
    dims, pools, calibration = {}, {}, {}
    for name, (pre, paths) in models.items():
        probe = np.zeros((1, 3, pre.input_size, pre.input_size), np.float32)
        dims[name] = dim = int(paths["top1"](probe)[1].shape[1])
        if dim in pools:
            continue
        t = time.perf_counter()
        pools[dim] = ivf_pool.build_pool(dim, args.items, args.partitions, args.factory, args.train_sample, args.seed)
        target = args.target_recall or None
        calibration[dim] = ivf_pool.calibrate(pools[dim], target, args.nprobe, args.calibration_queries, args.seed)
        print(f"pool of {args.items} x {dim}: built and calibrated in {time.perf_counter() - t:.0f} s", flush=True)
    return dims, pools, calibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--separate-run", type=Path, default=None, help="a run with classifier, embedder and bundle/")
    ap.add_argument("--separate-bundle", type=Path, default=None, help="its bundle, if not RUN/bundle")
    ap.add_argument("--multitask-run", type=Path, default=None, help="a stages=[multitask] run with bundle/")
    ap.add_argument("--multitask-bundle", type=Path, default=None, help="its bundle, if not RUN2/bundle")
    ap.add_argument("--photos", type=Path, default=None, help="folder of query photos (default: Grocery test)")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=43)
    ap.add_argument("--factory", default="IVF1024,Flat")
    ap.add_argument("--target-recall", type=float, default=0.95, help="recall@10 each index's nprobe must reach")
    ap.add_argument("--nprobe", type=int, default=16, help="every index's nprobe when --target-recall is 0")
    ap.add_argument("--calibration-queries", type=int, default=200, help="per index, never timed")
    ap.add_argument("--train-sample", type=int, default=32768, help="vectors each IVF index is trained on")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cascades", nargs="+", default=["separate", "multitask"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cascade_overhead.json"))
    args = ap.parse_args()
    root = args.photos or ROOT.parent / "shared" / "datasets" / "GroceryStoreDataset" / "dataset" / "test"
    photos = sorted(str(p) for p in root.rglob("*.jpg"))
    photos = [photos[i] for i in np.random.default_rng(args.seed).permutation(len(photos))[: args.queries]]
    load = {"start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        models = cascades(args, Path(tmp))
        dims, pools, calibration = build_pools(models, args)
        routed = {name: queries_for(photos, models[name], pools[dims[name]], args.seed) for name in models}
        rounds: dict = {name: {r: [] for r in ROUTINGS} for name in models}
        recalls: dict = {name: {} for name in models}
        rng = np.random.default_rng(args.seed + 3)
        for k in range(args.repeats):
            load[f"round_{k}"] = os.getloadavg()
            for name in models:
                pool = pools[dims[name]]
                for routing in ROUTINGS:
                    times, found = time_round(photos, models[name], pool, routed[name][routing], rng)
                    rounds[name][routing].append(_percentiles(times))
                    if k == 0:
                        parts, queries = routed[name][routing]
                        recalls[name][routing] = ivf_pool.timed_recall(pool, queries, parts, found)
        load["end"] = os.getloadavg()
    rows = {}
    for name in models:
        rows[name] = {"embedding_dim": dims[name]}
        for routing in ROUTINGS:
            summary, rec = _spread(rounds[name][routing]), recalls[name][routing]
            rows[name][routing] = {"summary": summary, "rounds": rounds[name][routing], "recall@10": rec}
            _print(name, routing, summary, rec)
    save_results(
        args.out,
        {
            "params": {k: str(v) for k, v in vars(args).items()},
            "partition_sizes": {d: p.sizes.tolist() for d, p in pools.items()},
            "nprobe": calibration,
            "loadavg": load,
            "results": rows,
        },
        faiss=faiss.__version__,
        faiss_threads=faiss.omp_get_max_threads(),
        onnxruntime=ort.__version__,
    )


if __name__ == "__main__":
    main()
