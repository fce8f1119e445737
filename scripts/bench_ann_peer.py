"""faiss HNSW beside `imgsearch bench index`, on the same vectors, in the same run.

Reads the fvecs files both sides index and our bench's JSON (its `sweep`), builds faiss
`IndexHNSWFlat` (M=32, efConstruction 100, f32, inner product; built on every core),
measures recall@10 against exact search, p50 latency and one-thread QPS (queries one at a
time, as ours) for each efSearch, and prints one JSON object with both sweeps and the ratio
of our QPS to faiss's at equal recall (linear interpolation between measured points at
recall 0.95, 0.985 and 0.99; null where a side never reaches it).

Usage: python bench_ann_peer.py BASE.fvecs QUERIES.fvecs OURS.json [--ef 16,32,...]
Not here: our index (src/bench/index.rs), installing faiss (scripts/bench-ann-peer.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import faiss
import numpy as np

TARGETS = (0.95, 0.985, 0.99)


def read_fvecs(path: str) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)
    if not (rows[:, 0] == dim).all():
        raise SystemExit(f"{path}: vectors of different dimensions")
    return np.ascontiguousarray(rows[:, 1:].view(np.float32))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def qps_at(points: list[tuple[float, float]], target: float) -> float | None:
    """QPS at `target` recall on the upper frontier of (recall, qps) points."""
    pts = sorted(points)
    best = None
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1 and r1 > r0:
            q = q0 + (q1 - q0) * (target - r0) / (r1 - r0)
            best = q if best is None else max(best, q)
    for r, q in pts:
        if r >= target:
            # A point at or past the target is a lower bound for the QPS there.
            best = q if best is None else max(best, q)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("queries")
    ap.add_argument("ours")
    ap.add_argument("--ef", default="16,24,32,48,64,96,128,192,256")
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=100)
    args = ap.parse_args()

    xb, xq = read_fvecs(args.base), read_fvecs(args.queries)
    n, dim = xb.shape
    threads = os.cpu_count() or 1

    faiss.omp_set_num_threads(threads)
    flat = faiss.IndexFlatIP(dim)
    flat.add(xb)
    _, truth = flat.search(xq, 10)
    del flat

    rss0 = rss_bytes()
    index = faiss.IndexHNSWFlat(dim, args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    t = time.perf_counter()
    index.add(xb)
    build_s = time.perf_counter() - t
    ram = rss_bytes() - rss0
    file_bytes = faiss.serialize_index(index).size

    faiss.omp_set_num_threads(1)
    sweep = []
    for ef in (int(e) for e in args.ef.split(",")):
        index.hnsw.efSearch = ef
        lat, found = [], 0
        start = time.perf_counter()
        for i in range(len(xq)):
            t = time.perf_counter()
            _, ids = index.search(xq[i : i + 1], 10)
            lat.append((time.perf_counter() - t) * 1000)
            found += len(set(ids[0].tolist()) & set(truth[i].tolist()))
        total = time.perf_counter() - start
        lat.sort()
        sweep.append({"ef_search": ef, "recall_at_10": found / (10 * len(xq)),
                      "p50_ms": lat[len(lat) // 2], "qps_1_thread": len(xq) / total})

    with open(args.ours) as f:
        ours = json.load(f)
    ours_pts = [(s["recall_at_10"], s["throughput"]["qps_1_thread"]) for s in ours["sweep"]]
    faiss_pts = [(s["recall_at_10"], s["qps_1_thread"]) for s in sweep]
    at = {}
    for r in TARGETS:
        a, b = qps_at(ours_pts, r), qps_at(faiss_pts, r)
        at[str(r)] = {"imgsearch_qps": a, "faiss_qps": b,
                      "ratio": (a / b) if a and b else None}
    print(json.dumps({
        "bench": "ann-peer", "vectors": n, "queries": len(xq), "dim": dim,
        "faiss": {"version": faiss.__version__, "index": f"IndexHNSWFlat M={args.m} "
                  f"efConstruction={args.ef_construction} f32 inner product",
                  "build_threads": threads, "build_s": build_s,
                  "ram_bytes_per_vector": ram / n, "file_bytes_per_vector": file_bytes / n,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "sweep": sweep},
        "imgsearch": {"build_s": ours["build_s"], "ram_bytes_per_vector": ours["ram_bytes_per_vector"],
                      "file_bytes_per_vector": ours["file_bytes_per_vector"],
                      "hnsw": ours["hnsw"], "rerank_candidates": ours["rerank_candidates"],
                      "sweep": [{"ef_search": s["ef_search"], "recall_at_10": s["recall_at_10"],
                                 "p50_ms": s["p50_ms"], "qps_1_thread": s["throughput"]["qps_1_thread"]}
                                for s in ours["sweep"]]},
        "qps_ratio_at_equal_recall": at,
    }))


if __name__ == "__main__":
    main()
