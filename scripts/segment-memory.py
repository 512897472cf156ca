#!/usr/bin/env python3
"""Peak memory of /v1/segment under concurrent maximum-size bodies (issue 14).

Starts `kesu serve` (no store, no auth) twice: with the default in-flight
character budget (KESU_MAX_INFLIGHT_TEXT_CHARS) and with the budget lifted
(1e9, as before the fix), sends N concurrent bodies of just under
KESU_MAX_BODY_BYTES of real complaint text (64 items), samples the process's
RSS every 20 ms, and prints baseline / peak / after for each run.

    python3 scripts/segment-memory.py [--kesu target/debug/kesu] [--concurrent 16]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

TEXT = ("客服三天不回，再不退款我就去12315投诉，还要找律师起诉你们，"
        "你们的快递把我的包裹弄丢了，电话打了十几次都没人处理。")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def body(max_bytes):
    per_item = (max_bytes - 2048) // 64
    chars = per_item // 3  # CJK: 3 bytes a char
    item = (TEXT * (chars // len(TEXT) + 1))[: min(chars, 20000)]
    b = json.dumps({"items": [{"id": i, "text": item} for i in range(64)]}, ensure_ascii=False).encode()
    assert len(b) < max_bytes, len(b)
    return b


def run(kesu, budget, concurrent, rounds):
    port = free_port()
    env = dict(os.environ, KESU_PORT=str(port), KESU_HOST="127.0.0.1", KESU_NO_AUTH="true", KESU_NO_STORE="true",
               KESU_LOG_FORMAT="json")
    if budget is not None:
        env["KESU_MAX_INFLIGHT_TEXT_CHARS"] = str(budget)
    p = subprocess.Popen([kesu, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=2)
                break
            except Exception:
                time.sleep(0.2)
        data = body(2 * 1024 * 1024)
        # one request first, so that lazily built tables count in the baseline
        urllib.request.urlopen(urllib.request.Request(base + "/v1/segment", data=data,
                                                      headers={"Content-Type": "application/json"}), timeout=300).read()
        time.sleep(1)
        baseline = rss_mb(p.pid)
        peak = [baseline]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(p.pid))
                time.sleep(0.02)

        statuses = {}
        lock = threading.Lock()

        def client():
            req = urllib.request.Request(base + "/v1/segment", data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    r.read()
                    code = r.status
            except urllib.error.HTTPError as e:
                e.read()
                code = e.code
            with lock:
                statuses[code] = statuses.get(code, 0) + 1

        t = threading.Thread(target=sample)
        t.start()
        t0 = time.time()
        for _ in range(rounds):
            threads = [threading.Thread(target=client) for _ in range(concurrent)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        took = time.time() - t0
        stop.set()
        t.join()
        time.sleep(2)
        return {"budget": budget if budget is not None else "default", "baseline_mb": round(baseline),
                "peak_mb": round(peak[0]), "after_mb": round(rss_mb(p.pid)), "statuses": statuses,
                "seconds": round(took, 1), "body_bytes": len(data)}
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kesu", default="target/debug/kesu")
    ap.add_argument("--concurrent", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    rows = [run(a.kesu, None, a.concurrent, a.rounds), run(a.kesu, 1_000_000_000, a.concurrent, a.rounds)]
    print("| in-flight budget | body | baseline RSS | peak RSS | after | answers | wall |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['budget']} | {r['body_bytes'] / 1e6:.2f} MB x {a.concurrent} | {r['baseline_mb']} MB | "
              f"{r['peak_mb']} MB | {r['after_mb']} MB | {r['statuses']} | {r['seconds']} s |")
    json.dump(rows, sys.stderr)


if __name__ == "__main__":
    main()
