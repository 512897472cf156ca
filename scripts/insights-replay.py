#!/usr/bin/env python3
"""Insights replay: a simulated week of real complaints with planted events,
loaded into a real `kesu serve` (shipped model, SQLite store), then the alert
log read back: detection delay and false alarms per rule, the emerging issue's
keywords, and the ingest cost the aggregates add to classify.

    cargo build --release --bin kesu
    python3 scripts/insights-replay.py --seed 1          # development: thresholds were set on this
    python3 scripts/insights-replay.py --seed 2 --out r.json   # the reported run

The week (168 hourly buckets ending two hours before now, Asia/Shanghai):
* background: real complaint texts read at run time from ../shared/corpora
  (STC-3 customer turns, negative food-delivery and shopping reviews), Poisson
  volume with a day/night cycle (about 8 items/h at night, 45 at the day's peak);
* a volume spike: day 4, 14:00, four times the usual hour's volume (background texts);
* an emerging issue: day 6 from 08:00, real phone reviews that report the phone
  freezing (死机; the planted term, kept out of the background), 3, 6, 10, 14, 18
  items in five consecutive hours;
* a collective-action surge: day 5, 20:00, 12 texts announcing a group action
  (authored from templates: the corpora hold almost none).

Each item is sent with its `received_at` and an idempotency key, in batches of
64 in time order. The replay then waits for the insights worker to drain its
queue and for the alert log to settle. A planted event is detected when the rule
written for it fires on a bucket from its start; the delay is counted in buckets.
Every other alert is a false alarm. The ingest cost is measured in the same
run: single-text /v1/classify requests, interleaved, to this server and to a
second one on the same model with KESU_INSIGHTS=false (p50/p99 ms each).

Standard library only.
"""
import argparse
import calendar
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import corpus  # noqa: E402
from soak import free_port  # noqa: E402

HOUR = 3_600_000
PLANTED = "死机"
COLLECTIVE = [
    "我们小区{n}户业主准备集体维权，明天一起去你们公司讨说法",
    "已经有{n}多个受害者建了群，准备联名投诉到银保监会",
    "我们{n}个人一起去集体维权，不解决就集体起诉",
    "群里{n}个被坑的用户商量好了，集体去12315投诉你们",
]


def http(method, url, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def start(kesu, port, db, extra_env):
    env = dict(os.environ, RUST_LOG="warn", **extra_env)
    p = subprocess.Popen(
        [kesu, "serve", "--port", str(port), "--no-auth", "--database-url", f"sqlite://{db}",
         "--lexicons", os.path.join(ROOT, "lexicons")],
        env=env, stdout=subprocess.DEVNULL, stderr=open(db + ".log", "w"))
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
            return p
        except Exception:
            time.sleep(0.2)
    p.kill()
    sys.exit(f"kesu serve on {port} did not become ready; see {db}.log")


def texts(rng):
    bg, leak = [], []
    for r in corpus.rows():
        t = r["text"].strip()
        if not (6 <= len(t) <= 300):
            continue
        if PLANTED in t:
            if r["source"] == "shopping" and r["meta"] == "手机:0":
                leak.append(t)
        elif r["source"] == "stc3" or (r["source"] in ("waimai", "shopping") and r["meta"].endswith("0")):
            bg.append(t)
    rng.shuffle(bg)
    rng.shuffle(leak)
    return bg, leak


def rate(hour_of_day):
    """Expected background items in an hour of the day."""
    return 8 + 37 * max(0.0, math.sin(math.pi * (hour_of_day - 7) / 15)) if 7 <= hour_of_day <= 22 else 8


def poisson(rng, lam):
    l, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < l:
            return k
        k += 1


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def build(rng, start_ms):
    bg, leak = texts(rng)
    utc0 = (start_ms // HOUR) % 24
    local = lambda h: (utc0 + h + 8) % 24  # Asia/Shanghai hour of day of bucket h
    day_start = next(h for h in range(24) if local(h) == 0)
    at = lambda day, hod: day_start + 24 * (day - 1) + hod  # bucket index of day (1-based) at local hour
    events = {
        "volume_spike": at(4, 14),
        "collective_action_surge": at(5, 20),
        "emerging_issue": at(6, 8),
    }
    items, bi = [], 0
    for h in range(168):
        n = poisson(rng, rate(local(h)))
        if h == events["volume_spike"]:
            n = int(4 * rate(local(h)))
        for _ in range(n):
            items.append((start_ms + h * HOUR + rng.randrange(HOUR), bg[bi % len(bg)]))
            bi += 1
        if h == events["collective_action_surge"]:
            for i in range(12):
                t = COLLECTIVE[i % len(COLLECTIVE)].format(n=rng.randrange(20, 200))
                items.append((start_ms + h * HOUR + rng.randrange(HOUR), t))
        k = h - events["emerging_issue"]
        if 0 <= k < 5:
            for _ in range([3, 6, 10, 14, 18][k]):
                items.append((start_ms + h * HOUR + rng.randrange(HOUR), leak.pop()))
    items.sort()
    return items, events, day_start


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kesu", default=os.path.join(ROOT, "target", "release", "kesu"))
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--ingest-requests", type=int, default=200)
    ap.add_argument("--out")
    ap.add_argument("--keep", action="store_true", help="leave the server running (prints its URL)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    now = int(time.time() * 1000)
    start_ms = now - now % HOUR - 170 * HOUR
    items, events, day_start = build(rng, start_ms)
    tmp = tempfile.mkdtemp(prefix="kesu-replay-")
    port, port_off = free_port(), free_port()
    env = {"KESU_INSIGHTS_EVERY_SECS": "1", "KESU_ALERT_LATENESS_SECS": "0"}
    on = start(a.kesu, port, os.path.join(tmp, "on.db"), env)
    off = start(a.kesu, port_off, os.path.join(tmp, "off.db"), {"KESU_INSIGHTS": "false"})
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        for i in range(0, len(items), 64):
            batch = [{"text": t, "received_at": iso(ms), "idempotency_key": f"replay-{a.seed}-{i + j}"}
                     for j, (ms, t) in enumerate(items[i:i + 64])]
            http("POST", base + "/v1/classify", {"items": batch})
        load_s = time.time() - t0
        # wait for the worker: queue drained and the alert log unchanged for 10 s
        last, still = None, 0
        for _ in range(900):
            m = urllib.request.urlopen(base + "/metrics").read().decode()
            q = re.search(r"^kesu_hotspot_queue (\d+)", m, re.M)
            alerts = http("GET", base + "/v1/insights/alerts?limit=500")
            key = (q and q.group(1), len(alerts))
            still = still + 1 if key == last and q and q.group(1) == "0" else 0
            last = key
            if still >= 10:
                break
            time.sleep(1)
        series = http("GET", base + f"/v1/insights/series?grain=hour&from={iso(start_ms)}&to={iso(start_ms + 168 * HOUR)}")
        per_rule, detected = {}, {}
        for al in alerts:
            b = calendar.timegm(time.strptime(al["bucket"][:19], "%Y-%m-%dT%H:%M:%S")) * 1000
            h = (b - start_ms) // HOUR
            r = al["rule"]
            ev = events.get(r)
            hit = ev is not None and 0 <= h - ev < 6 and r not in detected
            if r == "emerging_issue" and hit:
                hit = PLANTED in (al["detail"].get("keywords") or [])[:5]
            if hit:
                detected[r] = {"delay_buckets": h - ev, "keywords": al["detail"].get("keywords")}
            else:
                per_rule.setdefault(r, []).append({"bucket": al["bucket"], "detail": al["detail"]})
        issues = http("GET", base + f"/v1/insights/issues?at={iso(start_ms + (events['emerging_issue'] + 5) * HOUR)}&limit=5")
        # ingest cost: single texts, interleaved, insights on vs off
        sample = [t for _, t in items[:: max(1, len(items) // a.ingest_requests)]][: a.ingest_requests]
        lat = {"on": [], "off": []}
        for i, t in enumerate(sample):
            for name, p in (("on", port), ("off", port_off)) if i % 2 == 0 else (("off", port_off), ("on", port)):
                s = time.perf_counter()
                http("POST", f"http://127.0.0.1:{p}/v1/classify", {"text": t, "idempotency_key": f"ingest-{i}"})
                lat[name].append((time.perf_counter() - s) * 1000)
        report = {
            "seed": a.seed,
            "items": len(items),
            "simulated_days": 7,
            "load_seconds": round(load_s, 1),
            "counted": series["total"],
            "planted": {r: {"bucket": iso(start_ms + h * HOUR), "detected": detected.get(r)} for r, h in events.items()},
            "false_alarms": {r: len(v) for r, v in per_rule.items()},
            "false_alarms_per_day": {r: round(len(v) / 7, 2) for r, v in per_rule.items()},
            "false_alarm_detail": per_rule,
            "top_issues_at_emerging_peak": [{k: i[k] for k in ("size", "previous", "emerging", "keywords")} for i in issues["issues"]],
            "ingest_ms": {k: {"p50": round(pct(v, 0.5), 2), "p99": round(pct(v, 0.99), 2), "n": len(v)} for k, v in lat.items()},
            "loadavg": os.getloadavg(),
        }
        print(json.dumps(report, ensure_ascii=False, indent=1))
        if a.out:
            json.dump(report, open(a.out, "w"), ensure_ascii=False, indent=1)
        if a.keep:
            print(f"kesu serve still running at {base} (pid {on.pid}; no keys), store sqlite://{tmp}/on.db; "
                  f"the week: --from {iso(start_ms)} --to {iso(start_ms + 168 * HOUR)}", file=sys.stderr)
            on = None
    finally:
        for p in (on, off):
            if p:
                p.kill()


if __name__ == "__main__":
    main()
