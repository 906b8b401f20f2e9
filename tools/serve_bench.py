"""edgenn serve and edgenn score under load, on the loopback interface: correctness, batching, replicas, a kill.

    python tools/serve_bench.py                          # lenet5, 2,000 requests per scenario, 16 clients
    python tools/serve_bench.py --json serve_bench.json --requests 4000 --clients 32

Scenarios, each on a fresh deployment of the same local Ray instance (2 CPUs):
  batched-2    2 replicas, @serve.batch up to 16 (20 ms wait): every answer checked against Model.predict
  unbatched-2  2 replicas, --max-batch-size 1
  batched-1    1 replica, batching on
  kill-2       2 replicas, batching on, one replica killed (ray.kill) a third of the way through:
               the requests that failed meanwhile are counted
Then `edgenn score` over all 1,797 digits written as pictures: predictions against Model.classify.
Each client keeps one HTTP connection; latency is measured per request at the client. Figures: requests/s,
p50 and p99 ms, the batches the replicas ran by size (each answer's x-edgenn-batch header says the size of
the batch it ran in: k answers of size k are one batch).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(port: int, bodies: list[bytes], clients: int, during=None) -> dict:
    """Send every body to /predict from `clients` threads, each on its own keep-alive connection."""
    results: list = [None] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()
    fired = threading.Event()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            if during is not None and i >= len(bodies) // 3 and not fired.is_set():
                fired.set()
                during()
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", bodies[i], {"content-type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                results[i] = (
                    response.status,
                    response.getheader("x-edgenn-batch"),
                    payload,
                    time.perf_counter() - start,
                    response.getheader("x-edgenn-replica"),
                )
            except (OSError, http.client.HTTPException) as exc:
                results[i] = (None, None, repr(exc).encode(), time.perf_counter() - start, None)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    seconds = time.perf_counter() - start
    return {"results": results, "seconds": seconds}


def _scenario(name: str, port: int, inputs: np.ndarray, expected: np.ndarray, clients: int, during=None) -> dict:
    bodies = [json.dumps({"input": x[None].tolist()}).encode() for x in inputs]
    run = _load(port, bodies, clients, during)
    ok = [r for r in run["results"] if r[0] == 200]
    latencies = np.array([r[3] for r in ok]) * 1000
    wrong = 0
    worst = 0.0
    for r, want in zip(run["results"], expected):
        if r[0] != 200:
            continue
        got = np.array(json.loads(r[2])["output"], np.float32)[0]
        diff = float(np.abs(got - want).max())
        worst = max(worst, diff)
        wrong += not np.all(np.abs(got - want) <= 1e-4 + 1e-3 * np.abs(want))
    failures = Counter(str(r[0]) if r[0] else r[2].decode()[:60] for r in run["results"] if r[0] != 200)
    # each answer says how many rows its batch ran (x-edgenn-batch): k answers of a size-k batch make one batch
    answers = Counter(int(r[1]) for r in ok if r[1])
    batches = {k: round(n / k) for k, n in answers.items()}
    return {
        "scenario": name,
        "requests": len(bodies),
        "ok": len(ok),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "wrong_answers": wrong,
        "worst_abs_error": worst,
        "requests_per_s": round(len(ok) / run["seconds"], 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(ok) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(ok) else None,
        "batches_by_size": dict(sorted(batches.items())),
        "replicas_seen": len({r[4] for r in ok}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "lenet5" / "model.onnx"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path, help="Write the figures here too.")
    args = parser.parse_args()

    import ray
    from ray import serve

    from edgenn.data import load_digits_split
    from edgenn.runtime import Model
    from edgenn.runtime.cpuinfo import cpu_model
    from edgenn.serve import ServeOptions, app

    model = Model(args.model)
    digits = load_digits_split()
    pool = np.concatenate([digits.train.inputs(model.preprocessing), digits.test.inputs(model.preprocessing)])
    inputs = pool[np.arange(args.requests) % len(pool)].astype(np.float32)
    # the reference: one sample at a time, as each request sends it
    expected = np.stack([model.predict(x[None])["output"][0] for x in inputs])

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    report: dict = {"cpu": cpu_model(), "cores": 2, "model": args.model, "clients": args.clients, "scenarios": []}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 30})
        plans = [
            ("batched-2", ServeOptions(replicas=2, max_batch_size=16, batch_wait_ms=20, port=port), False),
            ("unbatched-2", ServeOptions(replicas=2, max_batch_size=1, port=port), False),
            ("batched-1", ServeOptions(replicas=1, max_batch_size=16, batch_wait_ms=20, port=port), False),
            ("kill-2", ServeOptions(replicas=2, max_batch_size=16, batch_wait_ms=20, port=port), True),
        ]
        for name, options, kill in plans:
            serve.run(app(args.model, options), name="edgenn", route_prefix="/")
            _scenario("warmup", port, inputs[:64], expected[:64], args.clients)

            def kill_one() -> None:
                named = ray.util.list_named_actors(all_namespaces=True)
                victim = sorted(a["name"] for a in named if a["namespace"] == "serve" and "EdgennModel" in a["name"])[0]
                ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
                print(f"  killed {victim}", file=sys.stderr)

            print(f"{name}: {args.requests} requests from {args.clients} clients", file=sys.stderr)
            figures = _scenario(name, port, inputs, expected, args.clients, kill_one if kill else None)
            report["scenarios"].append(figures)
            serve.delete("edgenn")
    finally:
        serve.shutdown()
        ray.shutdown()

    from edgenn.score import ScoreOptions, score

    with tempfile.TemporaryDirectory(prefix="edgenn-score-bench-") as work:
        from PIL import Image

        folder = Path(work) / "digits"
        folder.mkdir()
        everything = np.concatenate([digits.train.images, digits.val.images, digits.test.images])
        for i, image in enumerate(everything):
            Image.fromarray((255 - np.asarray(image) * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")
        print(f"score: {len(everything)} pictures", file=sys.stderr)
        result = score(args.model, folder, Path(work) / "out.parquet", ScoreOptions(actors=2, batch_size=128))
        import pyarrow.parquet as pq

        rows = pq.read_table(Path(work) / "out.parquet").to_pylist()
        disagree = sum(row["label"] != model.classify_picture(folder / row["id"], 1)[0].label for row in rows)
        report["score"] = {**result.to_dict(), "disagree_with_classify": disagree}

    lines = [
        f"serve on {report['cpu']} (2 cores), {args.requests} requests per scenario from {args.clients} clients",
        "scenario     ok     failed  wrong  req/s    p50 ms  p99 ms  replicas  batches run (size: count)",
    ]
    for s in report["scenarios"]:
        lines.append(
            f"{s['scenario']:<12} {s['ok']:<6} {s['failed']:<7} {s['wrong_answers']:<6} {s['requests_per_s']:<8} "
            f"{s['p50_ms']:<7} {s['p99_ms']:<7} {s['replicas_seen']:<9} {s['batches_by_size']}"
        )
    sc = report["score"]
    lines.append(
        f"score: {sc['rows_in']} pictures in, {sc['rows_out']} rows out, {sc['errors']} errors, "
        f"{sc['disagree_with_classify']} disagree with Model.classify, {sc['rows_per_second']} rows/s "
        f"({sc['seconds']:.1f} s with Ray's start)"
    )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
