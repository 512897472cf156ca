"""Draw the second labelling round (issue 13) into work chunks with their text
(git-ignored: corpus text is never committed).

Pools, in this order, each without rows already labelled (any (source, id) in
data/labels/*.tsv) and without exact duplicates (whitespace/width/case
normalised) of a labelled text or of an earlier draw:

  stc3     every STC-3 customer turn (the closest domain)
  esc3     the level-3 hunt: every row of every corpus with a cue of taking it
           outside (regulators, media, courts, police, collective action,
           self-harm or violence, exposure appeals)
  infosec  the information-security hunt: every row with a cue of scams,
           stolen accounts, leaked or misused personal data, call/SMS floods
  random   stratified random reviews and Weibo posts (seeded) up to --random

Texts shorter than 4 or longer than 600 characters are skipped (as in the
first round). Chunks of --chunk rows are written to OUT/todo/chunk_NNN.tsv
with columns pool, source, id, text; a count per pool is printed.

Usage: python3 scripts/draw_round2.py [--out /work/labelwork] [--chunk 200]
"""
import argparse, glob, os, random, re, sys, unicodedata
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402

ESC = re.compile(
    "12315|12345|12321|12300|工信部|通信管理局|消协|消费者协会|消委会|消保委|银保监|银监|保监|证监|金融监管|人民银行|人行|"
    "市场监管|工商局|工商部门|物价局|质监|食药监|监管部门|有关部门|相关部门|举报|上访|信访|"
    "曝光|媒体|记者|电视台|央视|报社|上热搜|热搜|黑猫|聚投诉|315|微博上|发到网上|发网上|扩散|转发|抖音|头条|"
    "起诉|诉讼|告你|告他|告到|律师|法院|法庭|打官司|仲裁|法律途径|法律责任|维权|"
    "报警|警察|公安|派出所|110|立案|"
    "集体|联名|一起投诉|大家一起|维权群|"
    "跳楼|自杀|不想活|同归于尽|弄死|砍|杀了|拼命|死给|死在|寻死|喝药|割腕|炸了|放火|烧了")
INFOSEC = re.compile(
    "诈骗|骗子电话|被骗|受骗|盗刷|被盗|盗号|盗用|冒用|冒充|冒名|泄露|泄漏|外泄|个人信息|隐私|身份证|实名|"
    "验证码|钓鱼|木马|病毒链接|链接|密码|账号被|账户被|帐号被|骚扰电话|骚扰短信|垃圾短信|推销电话|"
    "中奖|陌生号码|陌生电话|不知情|被开通|被注册|被绑定|信息安全|卖信息|倒卖|贩卖")
RANDOM_QUOTA = {"shopping": 0.45, "waimai": 0.15, "hotel": 0.12, "ewect": 0.17, "nlpcc": 0.11}


def norm(t):
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", t)).lower()


def labelled(main):
    keys = set()
    for fn in glob.glob(os.path.join(main, "data", "labels", "*.tsv")):
        with open(fn, encoding="utf-8") as f:
            next(f, None)
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) >= 2:
                    keys.add((p[0], p[1]))
    return keys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/labelwork")
    ap.add_argument("--main", default=os.path.join(HERE, ".."))
    ap.add_argument("--chunk", type=int, default=200)
    ap.add_argument("--random", type=int, default=7600)
    ap.add_argument("--seed", type=int, default=20261203)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    done = labelled(a.main)
    rows = [r for r in corpus.rows() if r["text"].strip()]
    seen = {norm(r["text"]) for r in rows if (r["source"], r["id"]) in done}
    pools = {"stc3": [], "esc3": [], "infosec": [], "random": []}

    def take(pool, r):
        k = norm(r["text"])
        if (r["source"], r["id"]) in done or len(k) < 4 or len(r["text"]) > 600 or k in seen:
            return False
        seen.add(k)
        pools[pool].append(r)
        return True

    for r in rows:
        if r["source"] == "stc3":
            take("stc3", r)
    for r in rows:
        t = r["text"]
        if ESC.search(t):
            take("esc3", r)
    for r in rows:
        t = r["text"]
        if INFOSEC.search(t):
            take("infosec", r)
    by = {}
    for r in rows:
        by.setdefault(r["source"], []).append(r)
    for src, share in RANDOM_QUOTA.items():
        pool = by[src][:]
        rng.shuffle(pool)
        want = int(a.random * share)
        got = 0
        for r in pool:
            if got >= want:
                break
            if take("random", r):
                got += 1
    os.makedirs(os.path.join(a.out, "todo"), exist_ok=True)
    n = 0
    for name in ("stc3", "esc3", "infosec", "random"):
        p = pools[name]
        if name != "stc3":
            rng.shuffle(p)
        for i in range(0, len(p), a.chunk):
            with open(os.path.join(a.out, "todo", f"chunk_{n:03d}.tsv"), "w", encoding="utf-8") as f:
                f.write("pool\tsource\tid\ttext\n")
                for r in p[i:i + a.chunk]:
                    text = re.sub(r"[\t\r\n]+", " ", r["text"])
                    f.write(f"{name}\t{r['source']}\t{r['id']}\t{text}\n")
            n += 1
        print(name, len(p), Counter(r["source"] for r in p))
    print("chunks", n)


if __name__ == "__main__":
    main()
