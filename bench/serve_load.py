"""A bounded load test of the search service on localhost.

    python bench/serve_load.py --source bundle=BUNDLE --photos 'DIR/*.jpg' [--clients 1 16 64]
                               [--searches 200 800 800] [--changes 20] [--warmup 20] [--extra max_in_flight=...]
                               [--serve-root CHECKOUT] [--label NAME] [--milvus [--milvus-consistency LEVEL]]

Starts ``serve.py`` (of ``--serve-root``, default this checkout: another checkout measures an older version
with the same load) on 127.0.0.1 with a fresh catalog-changes folder, then for each client count, closed
loop: ``--clients`` threads send ``--searches`` searches in all (photos drawn in turn) while one more client
adds ``--changes`` products and deletes every other one of them again. A client that gets 503 waits its
``Retry-After`` and sends the next search. Reports searches/s answered, p50/p95/p99 latency of the answered
searches, the share of 503s, other 5xx (must be 0), the server's batch sizes, and checks that the catalog
ends with exactly the products the changes leave (none lost, none duplicated). Prints and writes JSON.
``--warmup`` searches go first and are not counted (a fresh server's first passes are start-up).
``--milvus``: the service runs on ``index=milvus`` (conf/index/milvus.yaml as it is, unless
``--milvus-consistency`` overrides its consistency level) against a Milvus standalone server this script
starts on 127.0.0.1 (tests/milvus_server.py; its data in the temporary folder) and stops at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from record import save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
START_TIMEOUT_S = 600
REQUEST_TIMEOUT_S = 120


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    for field, filename, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _request(method: str, url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class _Connection:
    """One client's keep-alive connection (as a browser or an SDK keeps one): the load generator shares the
    2 cores with the server, so it should not pay a TCP handshake per search. Reconnects when the server
    closed it (it may close after a 503 sent before the body was read)."""

    def __init__(self, url: str) -> None:
        self.host, self.port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, float]:
        """The status and, for a 503, its Retry-After seconds."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
            try:
                self.conn.request("POST", path, body, {"Content-Type": content_type})
                r = self.conn.getresponse()
                r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, float(r.getheader("Retry-After") or 0)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _start(serve_root: Path, source: str, extra: list[str], changes: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(serve_root / "serve.py"), source, f"port={port}", f"catalog_changes={changes}", *extra]
    env = {**os.environ, "PYTHONPATH": str(serve_root / "src")}  # that checkout's package, not the installed one
    log = open(changes.parent / "serve.log", "w")  # noqa: SIM115  (the server's; closed with the folder)
    proc = subprocess.Popen(cmd, cwd=changes.parent, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve.py exited: {(changes.parent / 'serve.log').read_text()[-2000:]}")
        try:
            if _request("GET", f"{url}/healthz")[0] == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("serve.py did not answer /healthz in time")


def _warm_up(url: str, photos: list[bytes], args: argparse.Namespace) -> None:
    """Searches sent and not counted: a fresh server's first passes allocate (onnxruntime's arena, FAISS),
    which is start-up, not the steady state the rounds measure."""
    conn = _Connection(url)
    strategy = f"&strategy={args.strategy}" if args.strategy else ""
    for i in range(args.warmup):
        body, ctype = _multipart({}, [("image", "photo.jpg", photos[i % len(photos)])])
        conn.post(f"/search?k={args.k}{strategy}", body, ctype)


def _round(url: str, photos: list[bytes], args: argparse.Namespace, clients: int, searches: int) -> dict:
    """One closed-loop run with ``clients`` searchers and one catalog changer."""
    info = json.loads(_request("GET", f"{url}/info")[1])
    category = info["categories"][0]
    counters_before = info.get("batching")
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    next_query = iter(range(searches))
    strategy = f"&strategy={args.strategy}" if args.strategy else ""

    def client() -> None:
        conn = _Connection(url)
        for i in next_query:  # the shared iterator hands out each search once
            body, ctype = _multipart({}, [("image", "photo.jpg", photos[i % len(photos)])])
            t0 = time.perf_counter()
            status, retry = conn.post(f"/search?k={args.k}{strategy}", body, ctype)
            with lock:
                latencies.append(time.perf_counter() - t0)
                statuses.append(status)
            if status == 503:
                time.sleep(retry)

    added, deleted, change_failures = [], [], []

    def changer() -> None:
        for n in range(args.changes):
            pid = f"load-{clients}-{n}-{uuid.uuid4().hex[:6]}"
            fields = {"product_id": pid, "name": pid, "category": category}
            body, ctype = _multipart(fields, [("images", "c.jpg", photos[n % len(photos)])])
            status, text = _request("POST", f"{url}/products", body, ctype)
            (added if status == 201 else change_failures).append(pid if status == 201 else text.decode()[:200])
            if n % 2 == 1:
                status, text = _request("DELETE", f"{url}/products/{pid}")
                (deleted if status == 200 else change_failures).append(pid if status == 200 else text.decode()[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads.append(threading.Thread(target=changer))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0

    listed = json.loads(_request("GET", f"{url}/products?limit=1000")[1])
    ids = [p["product_id"] for p in listed["products"]]
    expected = set(added) - set(deleted)
    present = {i for i in ids if i.startswith(f"load-{clients}-")}
    after = json.loads(_request("GET", f"{url}/info")[1])
    st = np.array(statuses)
    ok = np.array(latencies)[st == 200] * 1e3
    return {
        "clients": clients,
        "requests": len(st),
        "answered": int((st == 200).sum()),
        "wall_s": wall,
        "searches_per_s": float((st == 200).sum() / wall),
        "latency_ms_answered": {f"p{p}": float(np.percentile(ok, p)) if len(ok) else None for p in (50, 95, 99)},
        "share_503": float((st == 503).mean()),
        "status_other_5xx": int(((st >= 500) & (st != 503)).sum()),
        "status_other": int(((st != 200) & (st < 500)).sum()),
        "products_added": len(added),
        "products_deleted": len(deleted),
        "change_failures": change_failures,
        "lost_changes": sorted(expected - present),
        "unexpected_products": sorted(present - expected),
        "duplicated_ids": len(ids) - len(set(ids)),
        "server_batching": _round_counters(counters_before, after.get("batching")),
    }


def _round_counters(before: dict | None, after: dict | None) -> dict | None:
    """The server's batch sizes and shed requests during one round (None: a version before the batcher)."""
    if before is None or after is None:
        return None
    sizes = {s: n - before["batch_sizes"].get(s, 0) for s, n in after["batch_sizes"].items()}
    sizes = {s: n for s, n in sizes.items() if n}
    batches = sum(sizes.values())
    return {
        "batches": batches,
        "mean_batch": sum(int(s) * n for s, n in sizes.items()) / batches if batches else 0.0,
        "batch_sizes": sizes,
        "shed": {r: n - before["shed"].get(r, 0) for r, n in after["shed"].items() if n - before["shed"].get(r, 0)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="bundle=DIR or run_dir=DIR")
    ap.add_argument("--photos", required=True, help="a glob of query photos")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--searches", type=int, nargs="+", default=[200, 800, 800], help="per client count")
    ap.add_argument("--changes", type=int, default=20, help="products added (every other one deleted again)")
    ap.add_argument("--warmup", type=int, default=20, help="searches sent before the rounds, not counted")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--strategy", default=None, help="default: the service's")
    ap.add_argument("--extra", nargs="*", default=[], help="more serve.py overrides")
    ap.add_argument("--serve-root", default=str(ROOT), help="the checkout whose serve.py runs")
    ap.add_argument("--label", default="this checkout", help="what is measured (recorded)")
    ap.add_argument("--milvus", action="store_true", help="index=milvus on a local server started here")
    ap.add_argument("--milvus-consistency", default=None, help="override index.consistency (Strong, Bounded...)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_load.json"))
    args = ap.parse_args()
    if args.milvus_consistency and not args.milvus:
        raise SystemExit("--milvus-consistency needs --milvus")
    if len(args.searches) != len(args.clients):
        raise SystemExit("--searches needs one count per --clients value")
    photos = [Path(p).read_bytes() for p in sorted(glob.glob(args.photos))]
    if not photos:
        raise SystemExit(f"--photos {args.photos!r} matches no file")

    rounds = []
    extra = list(args.extra)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if args.milvus:
            from tests.milvus_server import MilvusProcess

            server = MilvusProcess(Path(tmp) / "milvus").start()
            stack.callback(server.stop)
            extra += ["index=milvus", f"index.uri={server.uri}", "index.collection=serve_load"]
            extra += [f"index.consistency={args.milvus_consistency}"] if args.milvus_consistency else []
        proc, url = _start(Path(args.serve_root), args.source, extra, Path(tmp) / "changes")
        try:
            _warm_up(url, photos, args)
            for clients, searches in zip(args.clients, args.searches, strict=True):
                load = os.getloadavg()  # 1/5/15-min load: the bench itself adds ~2 to what else runs
                rounds.append(_round(url, photos, args, clients, searches))
                rounds[-1] |= {"loadavg_start": load, "loadavg_end": os.getloadavg()}
                print(json.dumps(rounds[-1]), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    result = {
        "label": args.label,
        "serve_root": args.serve_root,
        "source": args.source,
        "extra": extra,
        "store": "milvus (local standalone server)" if args.milvus else "the source's index in-process (FAISS)",
        "strategy": args.strategy or "the service's default",
        "k": args.k,
        "warmup_searches": args.warmup,
        "photos": len(photos),
        "load_before": os.getloadavg(),
        "rounds": rounds,
    }
    save_results(args.out, result)
    bad = [r for r in rounds if r["status_other_5xx"] or r["lost_changes"] or r["unexpected_products"]]
    if bad or any(r["duplicated_ids"] for r in rounds):
        raise SystemExit("load test found server errors or lost/duplicated catalog changes")


if __name__ == "__main__":
    main()
