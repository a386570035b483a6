#!/usr/bin/env python3
"""The peer of `reelrank bench ann`: hnswlib on vectors of the same distribution.

Unit vectors around 1,000 random unit centres chosen by a Zipf law (P(c) ~ 1/c), plus Gaussian
noise of half the centre's length (sigma = 0.5 / sqrt(dim)), normalised: what
`reelrank_ann::synthetic::ClusteredVectors` draws (numpy draws, so not the same points). The graph
is built on every core; every query runs alone on one thread; recall@k is against the exact top k.

    pip install hnswlib numpy
    python3 bench/ann_peer.py --vectors 1000000 --connectivity 32 --expansion-search 64,100,150
"""
import argparse
import json
import os
import time

import hnswlib
import numpy as np


def clustered(rng, centres, n):
    dim = centres.shape[1]
    weights = 1.0 / np.arange(1, len(centres) + 1)
    chosen = rng.choice(len(centres), size=n, p=weights / weights.sum())
    v = centres[chosen] + rng.normal(0.0, 0.5 / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--connectivity", type=int, default=16)
    p.add_argument("--expansion-add", type=int, default=200)
    p.add_argument("--expansion-search", default="32,48,64,96,128,192")
    p.add_argument("--index-file", help="save the built index here, or load it if the file exists")
    a = p.parse_args()
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(a.clusters, a.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = clustered(rng, centres, a.vectors)
    queries = clustered(rng, centres, a.queries)

    truth = []
    for chunk in np.array_split(queries, max(1, a.queries // 100)):
        scores = chunk @ data.T
        truth.extend(set(np.argpartition(-row, a.k)[: a.k]) for row in scores)

    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=a.dim)
    if a.index_file and os.path.exists(a.index_file):
        index.load_index(a.index_file, max_elements=a.vectors)
    else:
        index.init_index(max_elements=a.vectors, M=a.connectivity, ef_construction=a.expansion_add, random_seed=1)
        index.add_items(data, np.arange(a.vectors), num_threads=-1)
        if a.index_file:
            index.save_index(a.index_file)
    build_s = time.perf_counter() - started
    index.set_num_threads(1)
    print(f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''} M={a.connectivity} "
          f"efConstruction={a.expansion_add}: built (or loaded) in {build_s:.1f} s")
    sweep = []
    for ef in (int(e) for e in a.expansion_search.split(",")):
        index.set_ef(max(ef, a.k))
        latencies, hits = [], 0
        for q, t in zip(queries, truth):
            started = time.perf_counter()
            labels, _ = index.knn_query(q, k=a.k)
            latencies.append(time.perf_counter() - started)
            hits += len(t.intersection(labels[0].tolist()))
        latencies.sort()
        recall = hits / (a.k * len(truth))
        p50, p99 = latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3
        print(f"  ef={ef:>4}  recall@{a.k} {recall:.4f}  p50 {p50:.3f} ms  p99 {p99:.3f} ms")
        sweep.append({"expansion_search": ef, "recall": recall, "p50_ms": p50, "p99_ms": p99})
    print(json.dumps({"bench": "ann-peer", "peer": "hnswlib", "vectors": a.vectors, "build_s": build_s,
                      "sweep": sweep}))


if __name__ == "__main__":
    main()
