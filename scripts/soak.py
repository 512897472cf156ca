#!/usr/bin/env python3
"""Soak and fault test of `kesu serve` against a private PostgreSQL.

    python3 scripts/soak.py --kesu target/debug/kesu --duration 1800 --out /tmp/soak/run

What it does (standard library only):

1. Starts a private PostgreSQL from the newest /usr/lib/postgresql/*/bin (as the `postgres`
   user through `runuser` when run as root), like `PgServer` in tests/common/mod.rs.
2. Starts `kesu serve` (cwd: the repository root, so models/ and lexicons/ resolve) with four
   random API keys (intake, agent, reviewer, admin) given as hashes in KESU_API_KEYS, JSON logs
   to OUT/server-N.log, and waits for GET /readyz.
3. Runs a mixed load for --duration seconds:
   * 2 intake workers: POST /v1/classify, batches of 1-8 unique items (unique `id` and
     `idempotency_key`, some `customer_ref`/`channel`), about half with legal-risk words. A
     5xx, 429, 409 idempotency_conflict, timeout or connection error is retried with the SAME
     body (same ids and keys) with backoff honouring Retry-After, until a 200 acknowledges it;
     every acknowledged item is recorded (id, key, review_id, replayed).
   * 1 conversation poster over 2 conversation slots (customer and agent messages every 1-3 s,
     now and then DELETE and a new conversation), 1-2 SSE subscribers per slot counting events
     and reconnecting.
   * 1 reviewer: GET /v1/reviews (keyset paging), GET /v1/reviews/{id}, PATCH with the
     item's version (now and then a second PATCH at the stale version: 409 expected).
   * VmRSS of the service every 10 s.
4. Faults (fractions of the duration): PostgreSQL stopped (`pg_ctl -m fast stop`) at 25% and
   at 55% for min(30 s, 10% of the duration) and started again on the same port; the service
   SIGKILLed at 80% and restarted at once with the same settings.
5. Stops the load (in-flight intake requests are retried until acknowledged, up to 120 s), then
   checks the database with psql: every acknowledged item with a review_id is stored exactly
   once (by review id and by caller id), no caller id is stored twice, no acknowledged item
   without a review_id was stored, and GET /v1/reviews?status=all counts the same rows.
6. Writes OUT/summary.json, prints a markdown summary. Exit status 1 when an acknowledged item
   is missing or duplicated, a 5xx other than 503 was answered, or a server log has a panic.
"""
import argparse
import collections
import glob
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# --------------------------------------------------------------------------------------------
# Texts: (text, risky). risky = the shipped flagger says needs_review (checked with `kesu flags`), so
# the item must be stored; the others are stored only when the model puts them at escalation >= 2.
TEXTS = [
    ("客服三天不回，再不退款我就去12315投诉！", True),
    ("你们再不处理，我就请律师起诉你们公司。", True),
    ("我已经向银保监会反映了你们乱收费的问题。", False),  # a weak or no hit in the shipped lexicon: not needs_review
    ("这件事我会找媒体曝光，让大家都看看你们的嘴脸。", True),
    ("有人冒充你们客服骗了我两千块，我已经报警了。", True),
    ("你们这是诈骗！扣了钱什么都不给，我要报警。", True),
    ("我的个人信息被泄露了，天天接到骚扰电话，肯定是你们卖的。", True),
    ("催收员半夜打电话威胁我家人，这是暴力催收！", True),
    ("律师函我已经准备好了，下周一寄到你们总部。", True),
    ("再这样下去我们几十个业主就集体去你们公司维权。", False),  # a weak or no hit in the shipped lexicon: not needs_review
    ("我要去消费者协会投诉，再打12315，你们等着吧。", True),
    ("我已经在微博上曝光了，还联系了电视台记者。", False),  # a weak or no hit in the shipped lexicon: not needs_review
    ("信用卡被盗刷了五千元，你们风控是干什么的，我要起诉。", True),
    ("你们的APP把我的身份证照片泄露个人信息给第三方，我要追究法律责任。", True),
    ("催收的人上门泼油漆，这就是暴力催收，我已经报警处理。", True),
    ("保险理赔拖了半年，我准备向银保监会投诉并起诉到法院。", True),
    ("实在被逼得没办法了，活着也没意思。", False),  # a weak or no hit in the shipped lexicon: not needs_review
    ("快递丢了还不赔，我要去法院起诉你们。", True),
    ("贷款合同里的隐藏费用太黑了，我要向金融监管部门举报。", True),
    ("工作人员辱骂我，我录了音，准备发到抖音上曝光。", False),  # a weak or no hit in the shipped lexicon: not needs_review
    ("我手机号被泄露了，每天几十个推销电话，你们必须给个说法。", True),
    ("你们骗老年人买理财，这是诈骗，我已经向公安报案。", True),
    ("退款申请提交一周了还没到账，麻烦尽快处理一下。", False),
    ("物流信息三天没更新了，请帮我查一下包裹在哪里。", False),
    ("收到的衣服尺码不对，想换一个大一号的。", False),
    ("请问会员自动续费怎么取消？", False),
    ("洗衣机用了两个月就不脱水了，能不能上门维修？", False),
    ("客服态度还可以，就是等的时间有点长。", False),
    ("发票什么时候能开好？公司报销要用。", False),
    ("App 登录老是提示网络错误，换了网络也不行。", False),
    ("订的酒店到了说没房，太让人失望了。", False),
    ("商品页面写的是包邮，结算时却收了运费。", False),
    ("空调安装师傅迟到了两个小时，也没提前说一声。", False),
    ("优惠券过期了能不能帮我延长几天？", False),
    ("手机屏幕有一条划痕，是不是发错了翻新机？", False),
    ("我不想起诉，只希望你们尽快把钱退给我。", False),
    ("宽带断了三次了，每次都要等很久才修好。", False),
    ("积分兑换的礼品一直没有发货，请核实。", False),
    ("上次反映的问题到现在也没人回复，有点不满意。", False),
    ("餐品送到已经凉了，汤也洒了一半。", False),
]
CHANNELS = ["app", "call_centre", "weibo", "email", "web"]
NEXT_STATUS = {
    "new": ["in_review", "confirmed", "false_positive", "resolved"],
    "in_review": ["confirmed", "false_positive", "resolved", "new"],
    "confirmed": ["resolved", "in_review"],
    "false_positive": ["in_review"],
    "resolved": ["in_review"],
}


def now():
    return time.time()


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------------------------
class Stats:
    """Shared counters (one lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_route = collections.Counter()  # (route, status) -> n; status "conn_error"/"timeout"
        self.by_code = collections.Counter()  # (route, status, code) -> n for non-2xx
        self.retries = collections.Counter()  # reason -> n
        self.e503 = []  # (t, route, code)
        self.stored_ok = []  # t of a 200 that stored something (classify / conversation)
        self.bad_5xx = []  # non-503 5xx details
        self.unexpected = []  # unexpected 4xx etc.
        self.latency = collections.defaultdict(list)  # route -> seconds of 200s
        self.ok_times = collections.defaultdict(list)  # route -> times of 200s
        self.sse = collections.Counter()  # event type -> n
        self.sse_connects = 0
        self.sse_reconnects = 0
        self.sse_errors = collections.Counter()
        self.conv_acked = []  # (conversation id, seq, review_id)
        self.conv_deleted = 0
        self.conv_started = 0
        self.patch = collections.Counter()

    def record(self, route, status, code=None, t=None, elapsed=None, detail=None):
        with self.lock:
            self.by_route[(route, status)] += 1
            if isinstance(status, int) and status >= 300:
                self.by_code[(route, status, code or "")] += 1
            if status == 503:
                self.e503.append((now(), route, code or "", now() - (t or now())))
            if isinstance(status, int) and status >= 500 and status != 503:
                self.bad_5xx.append({"t": iso(t or now()), "route": route, "status": status, "code": code, "detail": detail})
            if status == 200 and elapsed is not None:
                self.latency[route].append(elapsed)
                self.ok_times[route].append(now())


class Client:
    """One HTTP request per connection (simple and robust across restarts)."""

    def __init__(self, ctx, key):
        self.ctx = ctx
        self.key = key

    def request(self, method, path, body=None, route=None, timeout=60.0, headers=None):
        """Returns (status or 'conn_error'/'timeout', headers dict, parsed json or text, error)."""
        route = route or f"{method} {path}"
        h = {"Authorization": f"Bearer {self.key}"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        t0 = now()
        conn = http.client.HTTPConnection("127.0.0.1", self.ctx.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            raw = r.read()
            st = r.status
            rh = {k.lower(): v for k, v in r.getheaders()}
        except socket.timeout as e:
            self.ctx.stats.record(route, "timeout", t=t0)
            return "timeout", {}, None, repr(e)
        except (OSError, http.client.HTTPException) as e:
            self.ctx.stats.record(route, "conn_error", t=t0)
            return "conn_error", {}, None, repr(e)
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", "replace")
        code = None
        if st >= 300 and isinstance(data, dict) and isinstance(data.get("error"), dict):
            code = data["error"].get("code")
        detail = None
        if st >= 500 and st != 503:
            detail = {"body": data, "request_id": rh.get("x-request-id"), "request": (body or b"")[:2000].decode("utf-8", "replace")}
        self.ctx.stats.record(route, st, code, t=t0, elapsed=now() - t0, detail=detail)
        return st, rh, data, None


# --------------------------------------------------------------------------------------------
class Postgres:
    def __init__(self, out):
        bins = sorted(p for p in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(p, "initdb")))
        if not bins:
            sys.exit("no PostgreSQL server under /usr/lib/postgresql")
        self.bin = bins[-1]
        self.dir = os.path.join(out, "pg")
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        self.root = os.geteuid() == 0
        if self.root:
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "kesu", "--auth=trust", "-E", "UTF8"])
        self.start()

    def run(self, args, check=True):
        cmd = (["runuser", "-u", "postgres", "--"] if self.root else []) + args
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"{args}: {p.stdout}")
        return p

    def start(self):
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self.run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start"])

    def stop(self, mode="fast"):
        self.run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"], check=False)

    @property
    def url(self):
        return f"postgres://kesu@127.0.0.1:{self.port}/postgres"

    def psql(self, sql):
        p = subprocess.run([os.path.join(self.bin, "psql"), self.url, "-At", "-F", "|", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {p.stderr}")
        return p.stdout


class Service:
    def __init__(self, ctx, kesu, env):
        self.ctx = ctx
        self.kesu = kesu
        self.env = env
        self.proc = None
        self.n = 0
        self.logs = []
        self.lock = threading.RLock()  # start / kill / the watchdog
        self.unexpected_exits = []

    def start(self, ready_timeout=600):
        self.n += 1
        log = os.path.join(self.ctx.out, f"server-{self.n}.log")
        self.logs.append(log)
        f = open(log, "wb")
        t0 = now()
        self.proc = subprocess.Popen([self.kesu, "serve"], cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT)
        f.close()
        while now() - t0 < ready_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kesu serve exited with {self.proc.returncode}; see {log}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.ctx.port, timeout=5)
                c.request("GET", "/readyz")
                st = c.getresponse().status
                c.close()
                if st == 200:
                    return now() - t0
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kesu serve not ready within {ready_timeout} s; see {log}")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def watchdog(self):
        """Restart the service when it exits without our asking (someone else's signal, a crash)."""
        while not self.ctx.hard_stop.is_set():
            with self.lock:
                if self.proc.poll() is not None and not self.ctx.stop.is_set():
                    rc = self.proc.returncode
                    t = now()
                    self.ctx.gen += 1
                    try:
                        ready = self.start()
                    except RuntimeError as e:
                        ready = repr(e)
                    self.unexpected_exits.append({"at": self.ctx.rel(t), "returncode": rc, "log": os.path.basename(self.logs[-2]),
                                                  "new_pid": self.pid, "ready_s": ready if isinstance(ready, str) else round(ready, 1)})
                    print(f"[soak {self.ctx.rel():7.1f}s] kesu exited unexpectedly (returncode {rc}); restarted as pid {self.pid}", flush=True)
            self.ctx.hard_stop.wait(1)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------------------------
class Ctx:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.stats = Stats()
        self.stop = threading.Event()  # stop starting new work
        self.hard_stop = threading.Event()  # give up retries
        self.port = None
        self.run_id = secrets.token_hex(3)
        self.seq_lock = threading.Lock()
        self.seq = 0
        self.gen = 0  # bumped at each service restart: conversations are in memory only
        self.t0 = None
        self.acked = {}  # caller id -> record
        self.abandoned = []  # items sent but never acknowledged
        self.acked_lock = threading.Lock()
        self.rss = []  # (t rel, pid, MB)

    def next_seq(self):
        with self.seq_lock:
            self.seq += 1
            return self.seq

    def rel(self, t=None):
        return round((t or now()) - self.t0, 1)


def make_text(ctx, n):
    i = random.randrange(len(TEXTS))
    base, risky = TEXTS[i]
    return f"{base}（单号KS{ctx.run_id}N{n:07d}）", (risky, i)


def backoff_wait(ctx, attempt, headers):
    ra = headers.get("retry-after") if headers else None
    try:
        w = float(ra) if ra is not None else None
    except ValueError:
        w = None
    if w is None:
        w = min(8.0, 0.25 * (2 ** min(attempt, 5)))
    w += random.uniform(0, 0.3)
    ctx.hard_stop.wait(w)


def classify_worker(ctx, key, wid):
    cl = Client(ctx, key)
    while not ctx.stop.is_set():
        items = []
        for _ in range(random.randint(1, 8)):
            n = ctx.next_seq()
            text, risky = make_text(ctx, n)
            it = {"id": f"soak{ctx.run_id}i{n:07d}", "text": text, "idempotency_key": f"soak-{ctx.run_id}-{n}-{uuid.uuid4().hex}"}
            if random.random() < 0.6:
                it["customer_ref"] = f"cust{ctx.run_id}k{random.randint(1, 60)}"
            if random.random() < 0.7:
                it["channel"] = random.choice(CHANNELS)
            items.append((it, risky))
        body = json.dumps({"items": [i for i, _ in items]}, ensure_ascii=False).encode()
        attempt = 0
        sent_at = now()
        while True:
            st, h, data, err = cl.request("POST", "/v1/classify", body, route="POST /v1/classify", timeout=90)
            if st == 200:
                break
            code = data.get("error", {}).get("code") if isinstance(data, dict) else None
            retry = st in ("conn_error", "timeout") or st == 429 or (isinstance(st, int) and st >= 500) or (st == 409 and code == "idempotency_conflict")
            if not retry:
                with ctx.stats.lock:
                    ctx.stats.unexpected.append({"t": iso(now()), "route": "POST /v1/classify", "status": st, "body": data})
                data = None
                break
            if ctx.hard_stop.is_set():
                data = None
                break
            attempt += 1
            with ctx.stats.lock:
                ctx.stats.retries[f"{st} {code or ''}".strip()] += 1
            backoff_wait(ctx, attempt, h)
        if data is None:
            with ctx.acked_lock:
                ctx.abandoned.extend(i["id"] for i, _ in items)
            continue
        got = {r.get("id"): r for r in data.get("items", [])}
        stored_any = False
        with ctx.acked_lock:
            for it, risky in items:
                r = got.get(it["id"])
                if r is None:
                    ctx.stats.unexpected.append({"t": iso(now()), "route": "POST /v1/classify", "status": 200, "body": f"no result for {it['id']}"})
                    continue
                rid = r.get("review_id")
                stored_any |= rid is not None
                ctx.acked[it["id"]] = {"key": it["idempotency_key"], "review_id": rid, "replayed": bool(r.get("replayed")),
                                       "risky": risky[0], "text_index": risky[1], "needs_review": r.get("flags", {}).get("needs_review"),
                                       "attempts": attempt + 1, "sent": round(sent_at - ctx.t0, 2)}
        if stored_any:
            with ctx.stats.lock:
                ctx.stats.stored_ok.append(now())
        ctx.stop.wait(random.uniform(0.1, 0.4))


class ConvSlot:
    def __init__(self, ctx, i):
        self.ctx = ctx
        self.i = i
        self.n = 0
        self.lock = threading.Lock()
        self.new_id()

    def new_id(self):
        with self.lock:
            self.n += 1
            self.id = f"soak{self.ctx.run_id}s{self.i}c{self.n}g{self.ctx.gen}"
            self.messages = 0
            self.limit = random.randint(15, 40)
        with self.ctx.stats.lock:
            self.ctx.stats.conv_started += 1

    def current(self):
        with self.lock:
            return self.id


def poster(ctx, key, slots):
    cl = Client(ctx, key)
    due = {s.i: now() + random.uniform(0, 2) for s in slots}
    gen = ctx.gen
    while not ctx.stop.is_set():
        if ctx.gen != gen:  # the service restarted: its conversations are gone
            gen = ctx.gen
            for s in slots:
                s.new_id()
        s = min(slots, key=lambda s: due[s.i])
        wait = due[s.i] - now()
        if wait > 0:
            if ctx.stop.wait(wait):
                break
            continue
        due[s.i] = now() + random.uniform(1, 3)
        cid = s.current()
        if s.messages >= s.limit:
            old = cid
            s.new_id()  # subscribers reconnect to the new id
            st, _, _, _ = cl.request("DELETE", f"/v1/conversations/{old}", route="DELETE /v1/conversations/{id}", timeout=30)
            with ctx.stats.lock:
                ctx.stats.conv_deleted += st == 204
            continue
        role = "customer" if random.random() < 0.75 else "agent"
        text = random.choice(TEXTS)[0] if role == "customer" else "您好，已经为您登记，我们会尽快处理。"
        body = json.dumps({"role": role, "text": text, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())},
                          ensure_ascii=False).encode()
        st, _, data, _ = cl.request("POST", f"/v1/conversations/{cid}/messages", body, route="POST /v1/conversations/{id}/messages", timeout=60)
        if st == 200:
            s.messages += 1
            msg = data.get("message", {})
            if msg.get("review_id"):
                with ctx.stats.lock:
                    ctx.stats.conv_acked.append((cid, msg.get("seq"), msg["review_id"]))
                    ctx.stats.stored_ok.append(now())
        elif isinstance(st, int) and st not in (503, 429):
            with ctx.stats.lock:
                ctx.stats.unexpected.append({"t": iso(now()), "route": "POST /v1/conversations/{id}/messages", "status": st, "body": data})


def subscriber(ctx, key, slot):
    first = True
    while not ctx.stop.is_set():
        cid = slot.current()
        conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=40)
        ctx.sse_conns.add(conn)
        try:
            try:
                conn.request("GET", f"/v1/conversations/{cid}/events", headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"})
                r = conn.getresponse()
            except (OSError, http.client.HTTPException):
                ctx.stats.record("GET /v1/conversations/{id}/events", "conn_error")
                raise
            ctx.stats.record("GET /v1/conversations/{id}/events", r.status)
            if r.status != 200:
                r.read()
                raise OSError(f"status {r.status}")
            with ctx.stats.lock:
                ctx.stats.sse_connects += 1
                ctx.stats.sse_reconnects += not first
            first = False
            event = None
            while not ctx.stop.is_set():
                line = r.readline()
                if not line:
                    with ctx.stats.lock:
                        ctx.stats.sse_errors["eof"] += 1
                    break
                line = line.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line == "":
                    if event:
                        with ctx.stats.lock:
                            ctx.stats.sse[event] += 1
                    if event == "closed":
                        event = None
                        break
                    event = None
                elif line.startswith(":"):
                    with ctx.stats.lock:
                        ctx.stats.sse["keep-alive"] += 1
        except socket.timeout:
            with ctx.stats.lock:
                ctx.stats.sse_errors["timeout"] += 1
        except (OSError, http.client.HTTPException) as e:
            if not ctx.stop.is_set():
                with ctx.stats.lock:
                    ctx.stats.sse_errors[type(e).__name__] += 1
                ctx.stop.wait(random.uniform(0.5, 1.5))
        finally:
            ctx.sse_conns.discard(conn)
            conn.close()


def reviewer(ctx, key):
    cl = Client(ctx, key)
    cursor = None
    while not ctx.stop.is_set():
        q = "/v1/reviews?limit=50" + ("&status=all" if random.random() < 0.3 else "")
        if cursor:
            q += "&after=" + cursor
        st, _, data, _ = cl.request("GET", q, route="GET /v1/reviews", timeout=30)
        if st == 200:
            cursor = data.get("next")
            items = data.get("items", [])
            for it in random.sample(items, min(2, len(items))):
                st2, h2, item, _ = cl.request("GET", f"/v1/reviews/{it['id']}", route="GET /v1/reviews/{id}", timeout=30)
                if st2 != 200:
                    continue
                nxt = random.choice(NEXT_STATUS[item["status"]])
                body = json.dumps({"version": item["version"], "status": nxt, "assignee": "soak_reviewer"}).encode()
                st3, _, _, _ = cl.request("PATCH", f"/v1/reviews/{it['id']}", body, route="PATCH /v1/reviews/{id}", timeout=30)
                with ctx.stats.lock:
                    ctx.stats.patch[str(st3)] += 1
                if st3 == 200 and random.random() < 0.15:  # a stale version: must lose
                    st4, _, _, _ = cl.request("PATCH", f"/v1/reviews/{it['id']}", body, route="PATCH /v1/reviews/{id}", timeout=30)
                    with ctx.stats.lock:
                        ctx.stats.patch[f"stale->{st4}"] += 1
        elif st == 422:
            cursor = None
        ctx.stop.wait(random.uniform(0.5, 1.5))


def rss_sampler(ctx, svc):
    while not ctx.hard_stop.is_set():
        pid = svc.pid
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        ctx.rss.append((ctx.rel(), pid, round(int(line.split()[1]) / 1024, 1)))
        except OSError:
            pass
        ctx.hard_stop.wait(10)


# --------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kesu", required=True)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for f in glob.glob(os.path.join(args.out, "server-*.log")):
        os.remove(f)
    ctx = Ctx(args)
    ctx.sse_conns = set()
    D = args.duration
    kesu = os.path.abspath(args.kesu)

    def log(msg):
        t = ctx.rel() if ctx.t0 else 0
        print(f"[soak {t:7.1f}s] {msg}", flush=True)

    pg = Postgres(args.out)
    log(f"postgres {pg.bin} on port {pg.port}")
    keys = {role: secrets.token_urlsafe(24) for role in ("intake", "agent", "reviewer", "admin")}
    entries = []
    for role, k in keys.items():
        h = subprocess.run([kesu, "keys", "hash"], input=k, stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        entries.append(f"soak_{role}:{role}:{h}")
    ctx.port = free_port()
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("KESU_"):
            del env[k]
    env.update({"KESU_PORT": str(ctx.port), "KESU_HOST": "127.0.0.1", "KESU_DATABASE_URL": pg.url,
                "KESU_API_KEYS_FILE": os.path.join(args.out, "keys.toml"), "KESU_LOG_FORMAT": "json",
                "KESU_API_KEYS": ";".join(entries)})
    svc = Service(ctx, kesu, env)
    ready_s = svc.start()
    ctx.t0 = now()
    log(f"kesu pid {svc.pid} on port {ctx.port}, ready after {ready_s:.1f} s")

    outage = min(30.0, 0.1 * D)
    faults = []
    threads = []

    def spawn(fn, *a):
        t = threading.Thread(target=fn, args=a, daemon=True)
        t.start()
        threads.append(t)
        return t

    spawn(rss_sampler, ctx, svc)
    spawn(svc.watchdog)
    workers = [spawn(classify_worker, ctx, keys["intake"], i) for i in range(2)]
    slots = [ConvSlot(ctx, i) for i in range(2)]
    others = [spawn(poster, ctx, keys["agent"], slots)]
    for s in slots:
        for _ in range(1 if s.i == 0 else 2):
            spawn(subscriber, ctx, keys["agent"], s)
    others.append(spawn(reviewer, ctx, keys["reviewer"]))

    def at(frac):
        ctx.stop.wait(max(0, ctx.t0 + frac * D - now()))

    for frac in (0.25, 0.55):
        at(frac)
        t1 = now()
        pg.stop("fast")
        t2 = now()
        log(f"postgres stopped (took {t2 - t1:.1f} s)")
        ctx.stop.wait(outage)
        t3 = now()
        pg.start()
        t4 = now()
        log(f"postgres started again (took {t4 - t3:.1f} s)")
        faults.append({"kind": "postgres_outage", "stop_at": ctx.rel(t1), "stopped_at": ctx.rel(t2), "start_at": ctx.rel(t3),
                       "started_at": ctx.rel(t4), "_t": (t1, t2, t3, t4)})
    at(0.80)
    with svc.lock:
        old_pid = svc.pid
        t1 = now()
        ctx.gen += 1
        svc.kill()
        t2 = now()
        ready_s = svc.start()
        t3 = now()
    log(f"kesu SIGKILLed (pid {old_pid}), restarted as pid {svc.pid}, ready after {ready_s:.1f} s")
    faults.append({"kind": "service_sigkill", "kill_at": ctx.rel(t1), "restart_at": ctx.rel(t2), "ready_at": ctx.rel(t3),
                   "old_pid": old_pid, "new_pid": svc.pid, "ready_s": round(ready_s, 1)})
    at(1.0)
    t_end_load = now()
    log("stopping load")
    ctx.stop.set()
    for t in others:
        t.join(60)
    drain_deadline = now() + 120
    for t in workers:
        t.join(max(0.1, drain_deadline - now()))
    ctx.hard_stop.set()
    for t in workers:
        t.join(30)
    for c in list(ctx.sse_conns):
        try:
            c.sock and c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    log("load stopped; verifying")

    # ---------------------------------------------------------------------------------------
    # Verification against the database and the API.
    schema = pg.psql("\\d items")
    with open(os.path.join(args.out, "items-schema.txt"), "w") as f:
        f.write(schema)
    rows = [l.split("|") for l in pg.psql("SELECT id, COALESCE(caller_id, ''), COALESCE(channel, '') FROM items").splitlines() if l]
    db_ids = collections.Counter(r[0] for r in rows)
    db_callers = collections.Counter(r[1] for r in rows if r[1])
    by_caller = collections.defaultdict(list)
    for r in rows:
        by_caller[r[1]].append(r[0])
    db_count = int(pg.psql("SELECT count(*) FROM items").strip())
    prefix = f"soak{ctx.run_id}i"
    acked = ctx.acked
    acked_stored = {cid: a for cid, a in acked.items() if a["review_id"]}
    missing, wrong_id, dup_ids = [], [], []
    for cid, a in acked_stored.items():
        if db_ids[a["review_id"]] != 1:
            missing.append({"caller_id": cid, "review_id": a["review_id"], "by_review_id": db_ids[a["review_id"]]})
        if db_callers[cid] != 1 or by_caller[cid] != [a["review_id"]]:
            wrong_id.append({"caller_id": cid, "review_id": a["review_id"], "db_ids": by_caller.get(cid, [])})
    dup_callers = {c: n for c, n in db_callers.items() if n > 1}
    dup_ids = {i: n for i, n in db_ids.items() if n > 1}
    stored_unacked_as_stored = [c for c in db_callers if c.startswith(prefix) and c in acked and not acked[c]["review_id"]]
    stored_never_acked = [c for c in db_callers if c.startswith(prefix) and c not in acked]
    conv_missing = [x for x in ctx.stats.conv_acked if db_ids[x[2]] != 1 or by_caller.get(f"{x[0]}:{x[1]}") != [x[2]]]
    # The API's view: every row, by paging the queue with status=all.
    api_count, after, api_ok = 0, None, True
    cl = Client(ctx, keys["reviewer"])
    api_seen = collections.Counter()
    while True:
        q = "/v1/reviews?status=all&limit=500" + (f"&after={after}" if after else "")
        st, _, data, _ = cl.request("GET", q, route="GET /v1/reviews (verify)", timeout=60)
        if st != 200:
            api_ok = False
            break
        for it in data["items"]:
            api_seen[it["id"]] += 1
        api_count += len(data["items"])
        after = data.get("next")
        if not after:
            break
    sample = random.sample(sorted(acked_stored), min(50, len(acked_stored)))
    api_sample_bad = []
    for cid in sample:
        st, _, it, _ = cl.request("GET", f"/v1/reviews/{acked_stored[cid]['review_id']}", route="GET /v1/reviews/{id} (verify)", timeout=30)
        if st != 200 or it.get("caller_id") != cid:
            api_sample_bad.append({"caller_id": cid, "status": st})
    st, _, metrics, _ = Client(ctx, keys["admin"]).request("GET", "/metrics", route="GET /metrics (verify)", timeout=30)
    if isinstance(metrics, str):
        with open(os.path.join(args.out, "metrics.txt"), "w") as f:
            f.write(metrics)
    end_pid = svc.pid
    time.sleep(0.5)
    svc.stop()
    pg.stop("fast")

    # Server logs: panics and error lines.
    panics, log_levels, signals_seen = [], collections.Counter(), []
    for lf in svc.logs:
        with open(lf, "rb") as f:
            for line in f:
                s = line.decode("utf-8", "replace")
                if "received; starting graceful shutdown" in s:
                    signals_seen.append(f"{os.path.basename(lf)}: {s.strip()[:200]}")
                if "panic" in s.lower():
                    panics.append(f"{os.path.basename(lf)}: {s.strip()[:500]}")
                try:
                    log_levels[json.loads(s).get("level", "?")] += 1
                except ValueError:
                    log_levels["non-json"] += 1

    # ---------------------------------------------------------------------------------------
    S = ctx.stats
    total = sum(n for (r, st), n in S.by_route.items() if not r.endswith("(verify)"))
    for fa in faults:
        if fa["kind"] != "postgres_outage":
            continue
        t1, t2, t3, t4 = fa["_t"]
        nxt = min([f["_t"][0] for f in faults if f.get("_t") and f["_t"][0] > t1] + [t4 + 120])
        hits = [(t, r, el) for t, r, c, el in S.e503 if c == "store_unavailable" and t1 <= t <= nxt]
        win = [t for t, _, _ in hits]
        els = sorted(el for _, _, el in hits)
        rec = [t for t in S.stored_ok if t >= t3]
        ok_during = [t for t in S.stored_ok if t2 + 1 <= t <= t3]
        fa.update({
            "outage_s": round(t3 - t2, 1),
            "store_unavailable_503s": len(win),
            "first_503_at": ctx.rel(min(win)) if win else None,
            "last_503_at": ctx.rel(max(win)) if win else None,
            "answered_503_for_s": round(max(win) - min(win), 1) if win else 0,
            "last_503_after_restart_s": round(max(win) - t4, 1) if win else None,
            "503_latency_s": {"p50": round(els[len(els) // 2], 2), "max": round(els[-1], 2)} if els else None,
            "503_by_route": dict(collections.Counter(r for _, r, _ in hits)),
            "first_store_ok_after_restart_s": round(min(rec) - t4, 1) if rec else None,
            "stored_while_down": len(ok_during),
            "ok_200_while_down": {r: sum(1 for t in v if t2 + 1 <= t <= t3) for r, v in S.ok_times.items() if "verify" not in r},
        })
    for fa in faults:
        fa.pop("_t", None)
    lat = {}
    for r, v in S.latency.items():
        v = sorted(v)
        lat[r] = {"n": len(v), "p50_ms": round(1000 * v[len(v) // 2]), "p99_ms": round(1000 * v[min(len(v) - 1, int(len(v) * 0.99))])}
    rss_vals = [m for _, _, m in ctx.rss]
    step = max(10.0, D / 10)
    rss_table, nextt = [], 0.0
    for t, pid, m in ctx.rss:
        if t >= nextt:
            rss_table.append((t, pid, m))
            nextt = t + step - 5
    if ctx.rss and rss_table[-1] != ctx.rss[-1]:
        rss_table.append(ctx.rss[-1])
    bad_5xx = S.bad_5xx
    summary = {
        "run_id": ctx.run_id,
        "duration_s": round(t_end_load - ctx.t0, 1),
        "requests_total": total,
        "requests": {f"{r} {st}": n for (r, st), n in sorted(S.by_route.items(), key=lambda x: (x[0][0], str(x[0][1])))},
        "errors_by_code": {f"{r} {st} {c}".strip(): n for (r, st, c), n in sorted(S.by_code.items(), key=lambda x: str(x))},
        "retries": dict(S.retries),
        "retries_total": sum(S.retries.values()),
        "latency": lat,
        "acknowledged_items": len(acked),
        "acknowledged_with_review_id": len(acked_stored),
        "acknowledged_replayed": sum(a["replayed"] for a in acked.values()),
        "acknowledged_after_retry": sum(a["attempts"] > 1 for a in acked.values()),
        "risky_items_acked": sum(a["risky"] for a in acked.values()),
        "risky_items_not_stored": sum(a["risky"] and not a["review_id"] for a in acked.values()),
        "abandoned_items": len(ctx.abandoned),
        "stored_share_by_text": {TEXTS[i][0][:16]: round(sum(1 for a in acked.values() if a["text_index"] == i and a["review_id"]) /
                                                          max(1, sum(1 for a in acked.values() if a["text_index"] == i)), 2)
                                 for i in range(len(TEXTS))},
        "conversation_messages_stored_acked": len(S.conv_acked),
        "db_items": db_count,
        "db_items_classify_soak": sum(1 for c in db_callers if c.startswith(prefix)),
        "db_items_conversation": sum(1 for r in rows if r[2] == "conversation"),
        "api_reviews_count": api_count if api_ok else None,
        "api_reviews_count_matches_db": api_ok and api_count == db_count and set(api_seen) == set(db_ids),
        "api_sample_bad": api_sample_bad,
        "missing": len(missing) + len(conv_missing),
        "missing_detail": (missing + [{"conversation": x} for x in conv_missing])[:50],
        "wrong_review_id_for_caller": wrong_id[:50],
        "duplicates": len(dup_callers) + len(dup_ids),
        "duplicate_detail": {"caller_ids": dict(list(dup_callers.items())[:50]), "ids": dict(list(dup_ids.items())[:50])},
        "stored_but_acked_without_review_id": stored_unacked_as_stored[:50],
        "stored_never_acknowledged": stored_never_acked[:50],
        "sse_events": dict(S.sse),
        "sse_connects": S.sse_connects,
        "sse_reconnects": S.sse_reconnects,
        "sse_stream_ends": dict(S.sse_errors),
        "conversations_started": S.conv_started,
        "conversations_deleted": S.conv_deleted,
        "patch": dict(S.patch),
        "rss_mb": {"start": rss_vals[0] if rss_vals else None, "max": max(rss_vals) if rss_vals else None,
                   "end": rss_vals[-1] if rss_vals else None},
        "rss_samples": ctx.rss,
        "faults": faults,
        "unexpected_service_exits": svc.unexpected_exits,
        "non_503_5xx": bad_5xx[:50],
        "unexpected": S.unexpected[:50],
        "server_log_levels": dict(log_levels),
        "panics": panics[:20],
        "shutdown_signals_in_logs": signals_seen,
        "pids": {"start": ctx.rss[0][1] if ctx.rss else None, "end": end_pid},
    }
    failures = []
    if summary["missing"]:
        failures.append(f"{summary['missing']} acknowledged items missing")
    if wrong_id:
        failures.append(f"{len(wrong_id)} acknowledged items stored under another id or more than once")
    if summary["duplicates"]:
        failures.append(f"{summary['duplicates']} duplicated items")
    if stored_unacked_as_stored:
        failures.append(f"{len(stored_unacked_as_stored)} items stored but acknowledged without review_id")
    if bad_5xx:
        failures.append(f"{len(bad_5xx)} 5xx answers other than 503")
    if panics:
        failures.append(f"{len(panics)} panic lines in the server logs")
    if svc.unexpected_exits:
        failures.append(f"{len(svc.unexpected_exits)} unexpected service exits (see server logs)")
    if ctx.abandoned:
        failures.append(f"{len(ctx.abandoned)} items never acknowledged")
    if not summary["api_reviews_count_matches_db"]:
        failures.append("GET /v1/reviews disagrees with the database")
    summary["failures"] = failures
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
    with open(os.path.join(args.out, "acked.json"), "w") as f:
        json.dump(acked, f)

    # ---------------------------------------------------------------------------------------
    L = []
    L.append(f"## kesu soak: {summary['duration_s']} s, run {ctx.run_id}\n")
    L.append(f"- requests: **{total}**, retries: **{summary['retries_total']}** ({', '.join(f'{k}: {v}' for k, v in sorted(S.retries.items())) or 'none'})")
    L.append(f"- acknowledged items: **{len(acked)}** ({len(acked_stored)} with review_id, {summary['acknowledged_replayed']} replayed, "
             f"{summary['acknowledged_after_retry']} after a retry); abandoned: {len(ctx.abandoned)}")
    L.append(f"- stored items in the database: **{db_count}** ({summary['db_items_classify_soak']} classify, "
             f"{summary['db_items_conversation']} conversation; {len(S.conv_acked)} conversation messages acknowledged with review_id); "
             f"GET /v1/reviews?status=all: {api_count} ({'matches' if summary['api_reviews_count_matches_db'] else 'MISMATCH'})")
    L.append(f"- **duplicates: {summary['duplicates']}**, **missing: {summary['missing']}**, stored under a wrong id: {len(wrong_id)}, "
             f"stored but acked without review_id: {len(stored_unacked_as_stored)}, stored but never acknowledged: {len(stored_never_acked)}")
    L.append(f"- risky texts acknowledged: {summary['risky_items_acked']}, of them not stored: {summary['risky_items_not_stored']}")
    L.append(f"- SSE: {sum(v for k, v in S.sse.items() if k != 'keep-alive')} events ({', '.join(f'{k}: {v}' for k, v in sorted(S.sse.items()))}), "
             f"{S.sse_connects} connects, {S.sse_reconnects} reconnects; stream ends: {dict(S.sse_errors)}")
    L.append(f"- conversations started {S.conv_started}, deleted {S.conv_deleted}; PATCH: {dict(S.patch)}")
    L.append(f"- RSS (MB): start {summary['rss_mb']['start']}, max {summary['rss_mb']['max']}, end {summary['rss_mb']['end']}")
    if svc.unexpected_exits:
        L.append(f"- **unexpected service exits**: {svc.unexpected_exits}")
    L.append(f"- non-503 5xx: {len(bad_5xx)}; panics in server logs: {len(panics)}; server log levels: {dict(log_levels)}")
    L.append("\n| route | status | n |\n|---|---|---|")
    for (r, st), n in sorted(S.by_route.items(), key=lambda x: (x[0][0], str(x[0][1]))):
        if n:
            L.append(f"| {r} | {st} | {n} |")
    if S.by_code:
        L.append("\n| route | status | code | n |\n|---|---|---|---|")
        for (r, st, c), n in sorted(S.by_code.items(), key=lambda x: str(x)):
            L.append(f"| {r} | {st} | {c} | {n} |")
    L.append("\n| route | 200s | p50 ms | p99 ms |\n|---|---|---|---|")
    for r, v in sorted(lat.items()):
        L.append(f"| {r} | {v['n']} | {v['p50_ms']} | {v['p99_ms']} |")
    L.append("\n| t (s) | pid | RSS MB |\n|---|---|---|")
    for t, pid, m in rss_table:
        L.append(f"| {t} | {pid} | {m} |")
    L.append("\n| fault | at (s) | details |\n|---|---|---|")
    for fa in faults:
        if fa["kind"] == "postgres_outage":
            L.append(f"| PostgreSQL stop | {fa['stop_at']}–{fa['started_at']} | down {fa['outage_s']} s; {fa['store_unavailable_503s']} × 503 store_unavailable "
                     f"from {fa['first_503_at']} to {fa['last_503_at']} (**{fa['answered_503_for_s']} s**); first stored write "
                     f"{fa['first_store_ok_after_restart_s']} s after restart; stored while down: {fa['stored_while_down']}; 200s while down: {fa['ok_200_while_down']}; 503 latency p50/max {(fa['503_latency_s'] or {}).get('p50')}/{(fa['503_latency_s'] or {}).get('max')} s |")
        else:
            L.append(f"| SIGKILL kesu | {fa['kill_at']} | pid {fa['old_pid']} → {fa['new_pid']}, ready {fa['ready_s']} s later |")
    L.append("\n**Result: " + ("PASS**" if not failures else "FAIL**: " + "; ".join(failures)))
    md = "\n".join(L)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(md + "\n")
    print(md, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
