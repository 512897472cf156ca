"""Draw the texts to label (issue 4) and write them, with their text, to
work-labels/batches/ (git-ignored: corpus text is never committed).

The draw is seeded and stratified so that every category and escalation level
is covered: all information-security candidates and all escalation-term
candidates from every corpus, plus stratified random rows per source.
Exact duplicates (after whitespace/width normalisation) are drawn once.
Usage: python3 scripts/sample_for_labelling.py [--out work-labels/batches]
"""
import argparse, os, random, re, sys, unicodedata
sys.path.insert(0, os.path.dirname(__file__))
import corpus

INFOSEC = re.compile("诈骗|盗刷|泄露|泄漏|骚扰电话|被盗|实名|个人信息|隐私|冒充|验证码|钓鱼|盗号|冒用|木马|信息安全|被骗|骗子电话|推销电话|垃圾短信|盗用")
ESCAL = re.compile("12315|12345|工信部|消协|消费者协会|银保监|金融监管|曝光|媒体|记者|起诉|律师|法院|报警|警察|公安|市场监管|工商局|维权|黑猫|央视|315|仲裁|打官司|跳楼|自杀|催收")
CONSUMER = re.compile("客服|快递|退款|退货|商家|店家|银行|移动|联通|电信|航空|航班|外卖|物流|订单|售后|投诉|酒店|充值|话费|流量|信用卡|京东|淘宝|天猫")
QUOTA = {  # random rows per source on top of the keyword hunts, as (negative-ish, positive-ish)
    "stc3": 1500, "shopping": (450, 150), "waimai": (280, 80), "hotel": (200, 70),
    "ewect": 350, "nlpcc": 220,
}


def norm(t):
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", t)).lower()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="work-labels/batches")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seed", type=int, default=20261122)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    seen, picked = set(), []

    def take(r):
        k = norm(r["text"])
        if len(k) < 4 or len(r["text"]) > 600 or k in seen:
            return False
        seen.add(k)
        picked.append(r)
        return True

    allrows = [r for r in corpus.rows() if r["text"].strip()]
    # 1. keyword hunts over every corpus (rare classes: information security, level 3)
    hunt = [r for r in allrows if INFOSEC.search(r["text"]) or ESCAL.search(r["text"])]
    rng.shuffle(hunt)
    nhunt = 0
    for r in hunt:
        if r["source"] in ("ewect", "nlpcc") and not CONSUMER.search(r["text"]) and not INFOSEC.search(r["text"]):
            continue  # general Weibo posts about news; keep only consumer-related ones
        if nhunt < 900 and take(r):
            nhunt += 1
    # 2. stratified random rows
    by = {}
    for r in allrows:
        by.setdefault(r["source"], []).append(r)
    for src, q in QUOTA.items():
        pool = by[src][:]
        rng.shuffle(pool)
        if isinstance(q, tuple):
            neg = [r for r in pool if r["meta"].endswith("0")]
            pos = [r for r in pool if r["meta"].endswith("1")]
            for sub, n in ((neg, q[0]), (pos, q[1])):
                k = 0
                for r in sub:
                    if k >= n:
                        break
                    k += take(r)
        else:
            if src in ("ewect", "nlpcc"):  # prefer angry/disgusted consumer posts, some neutral
                hot = [r for r in pool if r["meta"] in ("angry", "anger", "disgust") and CONSUMER.search(r["text"])]
                other = [r for r in pool if CONSUMER.search(r["text"]) and r not in hot]
                pool = hot + other[: q // 3]
            k = 0
            for r in pool:
                if k >= q:
                    break
                k += take(r)
    for r in by["ccb"]:
        take(r)
    rng.shuffle(picked)
    os.makedirs(a.out, exist_ok=True)
    for b in range(0, len(picked), a.batch):
        with open(os.path.join(a.out, f"batch_{b // a.batch:03d}.tsv"), "w", encoding="utf-8") as f:
            f.write("source\tid\ttext\n")
            for r in picked[b : b + a.batch]:
                text = re.sub(r"[\t\r\n]+", " ", r["text"])
                f.write(f"{r['source']}\t{r['id']}\t{text}\n")
    from collections import Counter
    print(len(picked), "texts,", (len(picked) + a.batch - 1) // a.batch, "batches;", dict(Counter(r["source"] for r in picked)), "hunt", nhunt)


if __name__ == "__main__":
    main()
