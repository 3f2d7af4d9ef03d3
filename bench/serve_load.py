"""A bounded load test of the search service on localhost.

    python bench/serve_load.py --source bundle=RUN/bundle --photos 'DIR/*.jpg' [--searches 1000]
                               [--clients 16] [--changes 20] [--extra strategy=...]

Starts ``serve.py`` on 127.0.0.1 (a fresh catalog-changes folder), then ``--clients`` threads send
``--searches`` searches in all (photos drawn in turn) while one more client adds ``--changes`` products and
deletes every other one of them again. Reports p50/p95/p99 latency and searches/s, counts 5xx and other
failures, and checks that the catalog ends with exactly the products the changes leave (none lost, none
duplicated). Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from record import save_results

ROOT = Path(__file__).resolve().parents[1]
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


def _start(source: str, extra: list[str], changes: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(ROOT / "serve.py"), source, f"port={port}", f"catalog_changes={changes}", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(changes.parent / "serve.log", "w"))  # noqa: SIM115
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="bundle=DIR or run_dir=DIR")
    ap.add_argument("--photos", required=True, help="a glob of query photos")
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--changes", type=int, default=20, help="products added (every other one deleted again)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--strategy", default="top1")
    ap.add_argument("--extra", nargs="*", default=[], help="more serve.py overrides")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_load.json"))
    args = ap.parse_args()
    photos = [Path(p).read_bytes() for p in sorted(glob.glob(args.photos))]
    if not photos:
        raise SystemExit(f"--photos {args.photos!r} matches no file")

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start(args.source, args.extra, Path(tmp) / "changes")
        try:
            info = json.loads(_request("GET", f"{url}/info")[1])
            category = info["categories"][0]
            n_before = info["n_products"]
            latencies: list[float] = []
            statuses: list[int] = []
            lock = threading.Lock()
            next_query = iter(range(args.searches))

            def client() -> None:
                for i in next_query:  # the shared iterator hands out each search once
                    body, ctype = _multipart({}, [("image", "photo.jpg", photos[i % len(photos)])])
                    t0 = time.perf_counter()
                    status, _ = _request("POST", f"{url}/search?k={args.k}&strategy={args.strategy}", body, ctype)
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                        statuses.append(status)

            added, deleted, change_failures = [], [], []

            def changer() -> None:
                for n in range(args.changes):
                    pid = f"load-{n}-{uuid.uuid4().hex[:6]}"
                    fields = {"product_id": pid, "name": pid, "category": category}
                    body, ctype = _multipart(fields, [("images", "c.jpg", photos[n % len(photos)])])
                    status, text = _request("POST", f"{url}/products", body, ctype)
                    (added if status == 201 else change_failures).append(pid if status == 201 else text)
                    if n % 2 == 1:
                        status, text = _request("DELETE", f"{url}/products/{pid}")
                        (deleted if status == 200 else change_failures).append(pid if status == 200 else text)

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
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
            present = {i for i in ids if i.startswith("load-")}
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    lat = np.array(latencies) * 1e3
    statuses_arr = np.array(statuses)
    result = {
        "source": args.source,
        "strategy": args.strategy,
        "k": args.k,
        "clients": args.clients,
        "searches": len(lat),
        "wall_s": wall,
        "searches_per_s": len(lat) / wall,
        "latency_ms": {f"p{p}": float(np.percentile(lat, p)) for p in (50, 95, 99)},
        "status_5xx": int((statuses_arr >= 500).sum()),
        "status_other_non_200": int(((statuses_arr != 200) & (statuses_arr < 500)).sum()),
        "products_added": len(added),
        "products_deleted": len(deleted),
        "change_failures": change_failures,
        "lost_changes": sorted(expected - present),
        "unexpected_products": sorted(present - expected),
        "duplicated_ids": len(ids) - len(set(ids)),
        "products_total_before_after": [n_before, listed["total"]],
    }
    print(json.dumps(result, indent=2))
    save_results(args.out, result)
    if result["status_5xx"] or result["lost_changes"] or result["unexpected_products"] or result["duplicated_ids"]:
        raise SystemExit("load test found server errors or lost/duplicated catalog changes")


if __name__ == "__main__":
    main()
