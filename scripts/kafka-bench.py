#!/usr/bin/env python3
"""Kafka intake throughput: records/s through one and through two `kesu consume` processes.

    cargo build --release --bin kesu
    python3 scripts/kafka-bench.py --kesu target/release/kesu --records 3000

For each consumer count (1, then 2), on fresh topics (4 partitions) and a fresh consumer
group, with the shipped model and a private PostgreSQL store (store rule as shipped):

1. `kesu produce` pushes RECORDS real complaint texts (STC-3 customer turns read from
   ../shared/corpora at run time, cycled), each keyed by a customer_ref.
2. N `kesu consume` processes start; the clock starts when the group has handed out every
   partition (the sum of `kesu_kafka_assigned_partitions` over the consumers' /metrics is 4)
   and stops when the sum of `kesu_kafka_records_total` reaches RECORDS. Reported: records/s
   over that span, and the wall time including start-up and the group join.

The broker is tansu (scripts/fetch-tansu.sh), in memory, on this machine: the figures are
kesu's (classification dominates), not a broker's. Standard library only.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from soak import Postgres, free_port  # noqa: E402  (the soak test's private PostgreSQL)


def metric_sum(port, name):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def texts(n):
    path = os.environ.get("KESU_CORPORA", os.path.join(ROOT, "..", "shared", "corpora"))
    os.environ["KESU_CORPORA"] = path
    import corpus

    rows = [r["text"] for r in corpus.rows() if r["source"] == "stc3"]
    if not rows:
        sys.exit(f"no STC-3 texts under {path}")
    return [rows[i % len(rows)] for i in range(n)]


def run(args, n_consumers, broker, pg, out, records):
    tag = f"bench{n_consumers}-{int(time.time())}"
    kafka = ["--brokers", broker, "--group", tag, "--input-topic", f"{tag}.in",
             "--results-topic", f"{tag}.out", "--dead-letter-topic", f"{tag}.dlq"]
    data = os.path.join(out, f"{tag}.jsonl")
    with open(data, "w", encoding="utf-8") as f:
        for i, t in enumerate(records):
            f.write(json.dumps({"id": i, "text": t, "customer_ref": f"C-{i % 997}"}, ensure_ascii=False) + "\n")
    subprocess.run([args.kesu, "produce", "--file", data, "--create-topics", "4"] + kafka, check=True,
                   stderr=subprocess.DEVNULL, cwd=ROOT)
    procs, ports = [], []
    t_start = time.time()
    for k in range(n_consumers):
        port = free_port()
        log = open(os.path.join(out, f"{tag}-{k}.log"), "w")
        procs.append(subprocess.Popen(
            [args.kesu, "consume", "--port", str(port), "--database-url", pg.url] + kafka,
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, RUST_LOG="warn")))
        ports.append(port)
    t_assigned = None
    deadline = time.time() + args.timeout
    done = 0
    while time.time() < deadline:
        if t_assigned is None and sum(metric_sum(p, "kesu_kafka_assigned_partitions") for p in ports) >= 4:
            t_assigned = time.time()
        done = sum(metric_sum(p, "kesu_kafka_records_total") for p in ports)
        if done >= len(records):
            break
        if any(p.poll() is not None for p in procs):
            sys.exit(f"a consumer exited; see {out}")
        time.sleep(0.2)
    t_end = time.time()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)
    if done < len(records):
        sys.exit(f"{n_consumers} consumer(s): {done}/{len(records)} records in {args.timeout} s")
    t0 = t_assigned or t_start
    return {"consumers": n_consumers, "records": len(records), "seconds": round(t_end - t0, 2),
            "records_per_s": round(len(records) / (t_end - t0), 1), "wall_s": round(t_end - t_start, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kesu", default=os.path.join(ROOT, "target/release/kesu"))
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--out", default=None, help="folder for logs (default: a temp dir)")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="kesu-kafka-bench-")
    os.makedirs(out, exist_ok=True)
    tansu = subprocess.run(["bash", os.path.join(HERE, "fetch-tansu.sh")], check=True,
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pg = Postgres(out)
    try:
        time.sleep(1)
        records = texts(args.records)
        results = [run(args, n, f"127.0.0.1:{port}", pg, out, records) for n in (1, 2)]
    finally:
        broker.kill()
        pg.stop("immediate")
    load = os.getloadavg()
    print(json.dumps({"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in load], "runs": results}, indent=2))
    print(f"| consumers | records | records/s | wall s (with start-up) |")
    print(f"|---|---|---|---|")
    for r in results:
        print(f"| {r['consumers']} | {r['records']} | {r['records_per_s']} | {r['wall_s']} |")
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
