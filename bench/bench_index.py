"""Benchmark the segment index kinds on synthetic clustered embeddings.

    .venv/bin/python bench/bench_index.py --n 1000000          # the recorded run
    .venv/bin/python bench/bench_index.py --n 100000 --quick   # a time-bounded first look

Data: ``--clusters`` Gaussian clusters on the unit sphere (not uniform noise, which
has no neighbourhood structure and makes every ANN index look bad), ``--n``
database vectors and ``--nq`` held-out queries from the same clusters, all
L2-normalised; inner product = cosine, as in segtag's index.

For each configuration: build time and add rate, queries per second over one
batch of ``--nq`` queries, and recall@10 against exact search (Flat's results are
the ground truth). Each is run with 1 thread and with all threads
(``faiss.omp_set_num_threads``); the QPS ratio is to exact search at the same
thread count. QPS (batch) searches all queries in one call (exact search then runs
as one matrix multiply, its best case); QPS (1/call) issues one query per call on
one thread, as the API does per request. Prints a Markdown table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# On a shared, oversubscribed machine OpenMP threads that spin while waiting steal the
# cores the other threads need (measured here: 3x slower exact search); yield instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss as _faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import cpu_model

faiss: Any = _faiss  # its type stubs lag the SWIG API


@dataclass
class Row:
    index: str
    params: str
    threads: int
    build_s: float
    add_per_s: float
    qps: float
    ratio: float
    recall10: float
    serial_qps: float = 0.0  # one query per call, as an API request issues them (1 thread only)
    serial_ratio: float = 0.0


def make_data(n: int, nq: int, d: int, clusters: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors: centre + N(0, spread^2/d) noise, normalised (chunked to bound memory)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, d), dtype=np.float32)
        for lo in range(0, m, 100_000):
            hi = min(m, lo + 100_000)
            noise = rng.standard_normal((hi - lo, d), dtype=np.float32) * np.float32(spread / np.sqrt(d))
            out[lo:hi] = centres[rng.integers(0, clusters, hi - lo)] + noise
        faiss.normalize_L2(out)
        return out

    return draw(n), draw(nq)


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def timed_search(index: Any, q: np.ndarray, k: int, params: Any = None, min_s: float = 1.0) -> tuple[float, np.ndarray]:
    """QPS of batched searches (repeated until min_s has passed) and the labels of the first."""
    started = time.perf_counter()
    _, labels = index.search(q, k, params=params) if params is not None else index.search(q, k)
    rounds = 1
    while time.perf_counter() - started < min_s:
        index.search(q, k, params=params) if params is not None else index.search(q, k)
        rounds += 1
    return rounds * len(q) / (time.perf_counter() - started), labels


def serial_qps(index: Any, q: np.ndarray, k: int, params: Any = None, min_s: float = 2.0) -> float:
    """Queries per second issuing one query per search call (the serving pattern)."""
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < min_s or n < 5:
        row = q[n % len(q) : n % len(q) + 1]
        index.search(row, k, params=params) if params is not None else index.search(row, k)
        n += 1
    return n / (time.perf_counter() - started)


def build(make: Callable[[], Any], x: np.ndarray, train_n: int) -> tuple[Any, float, float]:
    """(index, build seconds incl. training, add rate in vectors/s)."""
    index = make()
    started = time.perf_counter()
    if not index.is_trained:
        rng = np.random.default_rng(1)
        sample = x[rng.choice(len(x), min(train_n, len(x)), replace=False)]
        index.train(sample)
    add_started = time.perf_counter()
    for lo in range(0, len(x), 100_000):
        index.add(x[lo : lo + 100_000])
    done = time.perf_counter()
    return index, done - started, len(x) / (done - add_started)


class Bench:
    """Measures configurations against exact search (run first) on the same queries."""

    def __init__(self, q: np.ndarray, k: int, thread_counts: list[int]) -> None:
        self.q, self.k, self.thread_counts = q, k, thread_counts
        self.rows: list[Row] = []
        self.exact_qps: dict[int, float] = {}
        self.exact_serial = 0.0
        self.truth = np.zeros((0, k), dtype=np.int64)

    def exact(self, flat: Any, build_s: float, add_rate: float) -> None:
        for t in self.thread_counts:
            faiss.omp_set_num_threads(t)
            qps, labels = timed_search(flat, self.q, self.k)
            if not len(self.truth):
                self.truth = labels
            self.exact_qps[t] = qps
            row = Row("Flat", "exact", t, build_s, add_rate, qps, 1.0, 1.0)
            if t == 1:
                self.exact_serial = serial_qps(flat, self.q, self.k)
                row.serial_qps, row.serial_ratio = self.exact_serial, 1.0
            self.rows.append(row)
            print(row, flush=True)

    def measure(self, name: str, params_text: str, index: Any, build_s: float, add_rate: float, params: Any) -> None:
        for t in self.thread_counts:
            faiss.omp_set_num_threads(t)
            qps, labels = timed_search(index, self.q, self.k, params)
            recall = recall_at(labels, self.truth, self.k)
            row = Row(name, params_text, t, build_s, add_rate, qps, qps / self.exact_qps[t], recall)
            if t == 1:
                row.serial_qps = serial_qps(index, self.q, self.k, params)
                row.serial_ratio = row.serial_qps / self.exact_serial
            self.rows.append(row)
            print(row, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--nq", type=int, default=500)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--clusters", type=int, default=10_000)
    p.add_argument("--spread", type=float, default=0.8, help="noise norm relative to the unit cluster centre")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nlist", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--skip", nargs="*", default=[], choices=["ivf", "hnsw"])
    p.add_argument("--quick", action="store_true", help="fewer settings (first look)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/out/index.json")
    args = p.parse_args()
    if args.quick:
        args.nlist, args.nprobe, args.ef_search = args.nlist[:1], [16], [64]

    all_threads = os.cpu_count() or 1
    thread_counts = sorted({1, all_threads})
    print(f"machine: {cpu_model()}, {all_threads} cores, load {os.getloadavg()[0]:.1f}; faiss {faiss.__version__}")
    t0 = time.perf_counter()
    x, q = make_data(args.n, args.nq, args.d, args.clusters, args.spread, args.seed)
    print(f"data: {args.n} x {args.d} in {args.clusters} clusters, {args.nq} queries ({time.perf_counter() - t0:.1f}s)")

    bench = Bench(q, args.k, thread_counts)
    faiss.omp_set_num_threads(all_threads)
    flat, flat_build, flat_add = build(lambda: faiss.IndexFlatIP(args.d), x, 0)
    bench.exact(flat, flat_build, flat_add)
    del flat

    if "ivf" not in args.skip:
        for nlist in args.nlist:
            faiss.omp_set_num_threads(all_threads)

            def make_ivf(nlist: int = nlist) -> Any:
                return faiss.IndexIVFFlat(faiss.IndexFlatIP(args.d), args.d, nlist, faiss.METRIC_INNER_PRODUCT)

            ivf, b, a = build(make_ivf, x, max(40 * nlist, 100_000))
            for nprobe in args.nprobe:
                params = faiss.SearchParametersIVF(nprobe=nprobe)
                bench.measure("IVFFlat", f"nlist={nlist} nprobe={nprobe}", ivf, b, a, params)
            del ivf

    if "hnsw" not in args.skip:
        faiss.omp_set_num_threads(all_threads)

        def make_hnsw() -> Any:
            index = faiss.IndexHNSWFlat(args.d, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = args.ef_construction
            return index

        hnsw, b, a = build(make_hnsw, x, 0)
        for ef in args.ef_search:
            text = f"M={args.hnsw_m} efC={args.ef_construction} efSearch={ef}"
            bench.measure("HNSWFlat", text, hnsw, b, a, faiss.SearchParametersHNSW(efSearch=ef))
        del hnsw
    rows = bench.rows

    header = (
        "| index | params | threads | build s | add/s | QPS (batch) | x exact | QPS (1/call) | x exact | recall@10 |\n"
        + "|---" * 10
        + "|"
    )
    lines = [
        f"| {r.index} | {r.params} | {r.threads} | {r.build_s:.1f} | {r.add_per_s:,.0f} | {r.qps:,.0f} | "
        f"{r.ratio:.1f} | {f'{r.serial_qps:,.0f}' if r.serial_qps else '-'} | "
        f"{f'{r.serial_ratio:.1f}' if r.serial_ratio else '-'} | {r.recall10:.3f} |"
        for r in rows
    ]
    print("\n" + header + "\n" + "\n".join(lines))
    good = [r for r in rows if r.recall10 >= 0.95 and max(r.ratio, r.serial_ratio) >= 20]
    winners = ", ".join(f"{r.index} {r.params} ({r.threads}t)" for r in good) or "none"
    print("\nrecall@10 >= 0.95 at >= 20x exact QPS:", winners)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "machine": cpu_model(), "rows": [asdict(r) for r in rows]}, f, indent=2)


if __name__ == "__main__":
    main()
