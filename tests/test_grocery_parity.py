"""On real Grocery photos: search.py and the service return exactly the ranked products that evaluate.py's
same strategy gives each photo (a tiny network trained for one batch: the path is under test, not accuracy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from snapsearch.data.dataset import LabelMaps
from snapsearch.runtime.batch import BatchIO
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import IndexSpec, embed_pool, label_indices
from snapsearch.search.sources import catalog_pool
from snapsearch.serve.task import build_app
from snapsearch.utils.resolvers import register_resolvers

from .conftest import CONF_DIR, ROOT, run_entry, run_manifest, run_train

pytestmark = pytest.mark.grocery
N_PHOTOS = 6
K = 5


@pytest.fixture(scope="module")
def grocery_run(grocery: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("grocery")
    run_dir = tmp / "run"
    run_train(
        tmp,
        "experiment=smoke",
        "data=grocery",
        f"data.manifest.root={grocery}",
        "data.manifest.download=false",
        "debug=fdr",
        "logger=csv",
        f"run_dir={run_dir}",
    )
    return run_dir


def test_search_and_service_rank_as_the_evaluator(grocery_run: Path, grocery: Path, tmp_path: Path) -> None:
    register_resolvers()
    common = ("latency.n_queries=1", "latency.warmup=0", "rejection.enabled=false", "logger=none")
    run_entry("evaluate.py", tmp_path, f"run_dir={grocery_run}", *common)
    rankings = json.loads(next((grocery_run / "evaluations").glob("*/rankings.json")).read_text())
    photos = sorted(rankings["fusion"])[:: len(rankings["fusion"]) // N_PHOTOS][:N_PHOTOS]
    paths = [grocery / "dataset" / image_id for image_id in photos]

    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    for image_id, path in zip(photos, paths, strict=True):
        (photo_dir / image_id.replace("/", "__")).symlink_to(path)
    search = [sys.executable, str(ROOT / "search.py"), f"run_dir={grocery_run}", f"image={photo_dir}/*.jpg"]
    cli = subprocess.run(
        [*search, "format=jsonl", f"k={K}", "strategy=fusion"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    lines = [json.loads(line) for line in cli.stdout.splitlines()]
    by_photo = {Path(r["query"]).name.replace("__", "/"): [p["product_id"] for p in r["products"]] for r in lines}
    assert by_photo == {image_id: rankings["fusion"][image_id][:K] for image_id in photos}

    # the service as serve.py builds it (its config's strategies: evaluate.py's, less the oracle)
    overrides = [f"run_dir={grocery_run}", f"catalog_changes={tmp_path / 'changes'}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        client = TestClient(build_app(compose(config_name="serve", overrides=overrides)))
    for strategy in ("global", "top1", "topk", "fusion", "adaptive", "conformal"):
        for image_id, path in zip(photos, paths, strict=True):
            params = {"k": K, "strategy": strategy}
            r = client.post("/search", files={"image": (path.name, path.read_bytes())}, params=params)
            assert r.status_code == 200, r.text
            served = [p["product_id"] for p in r.json()["products"]]
            assert served == rankings[strategy][image_id][:K], (strategy, image_id)


def test_qdrant_ranks_grocery_photos_as_faiss_flat(grocery_run: Path) -> None:
    """Qdrant (embedded: exact search) and FAISS Flat rank real photos alike for every strategy, with real
    ImageNet features (the one-batch network's embeddings are all within 1e-3 of each other: float noise
    would decide its rankings)."""
    pytest.importorskip("qdrant_client")
    generic = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "generic_embedder" / "efficientnet_lite0.yaml"))
    cascade = Cascade.from_run(grocery_run, embedder="generic", generic_embedder=generic)
    labels = LabelMaps.load(grocery_run / "labels.json")
    m = run_manifest(grocery_run)
    pool = catalog_pool(m, labels)
    photos = m[(m["domain"] == "query") & (m["split"] == "test")].iloc[::60]
    io = BatchIO(batch_size=32, workers=0, max_pixels=cascade.max_pixels, draft=cascade.draft_decode)
    qdrant, _ = embed_pool(IndexSpec.from_config({"backend": "qdrant"}), cascade.runtime, pool, labels, io)
    out = cascade.infer_frame(photos, labels, io, classify=True, what="grocery photos")
    truth = label_indices(photos.loc[out.rows], labels)[0]
    for name in cascade.strategies:
        flat_ranked = cascade.rank(out.embeddings, out.probs, K, name, truth)[0]
        qdrant_ranked = cascade.rank(out.embeddings, out.probs, K, name, truth, index=qdrant)[0]
        assert [r.products for r in qdrant_ranked] == [r.products for r in flat_ranked], name
