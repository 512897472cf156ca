"""Hunt every corpus for information-security candidates (issue: the class
`information_security` is thin) and write them, with their text, to
work-labels/batches/batch_042.tsv, batch_043.tsv, ... (git-ignored: corpus
text is never committed).

Every corpus row (scripts/corpus.py) is matched against a broad set of cues,
grouped in three tiers by how strongly they point at information security
(scams and impostors, phishing, stolen accounts, 盗刷, leaked or misused
personal data, identity misuse, call/SMS floods, SIM and password safety):

  tier 3  words that name an information-security event (诈骗, 盗刷, 泄露,
          冒充, 验证码, 被盗, 骚扰电话, 号码被..., 不知情 ...);
  tier 2  words often found in such complaints but as often elsewhere
          (身份证, 密码, 绑定, 推销, 中奖, 点击链接 ...), and the fraud words
          (骗子, 欺诈, 受骗 ...), which add less to the rank score;
  tier 1  weak words that mostly mean something else (骗 alone, 短信, 扣费,
          安全, 病毒, 他人 ...).

A review (shopping, hotel, waimai) whose only tier-2 cues are fraud words
drops to tier 1 (it mostly calls the seller 骗子: service or product by the
schema), and so does a Weibo post (ewect, nlpcc) with no consumer word.

Rows already labelled (any (source, id) in data/labels/batch_*.tsv) are
dropped, and so are exact duplicates (the normalisation of
sample_for_labelling.py) of a labelled text or of an earlier candidate,
texts shorter than 4 characters, and, as in the first draw, texts longer
than 600 characters unless they carry a tier-3 cue. Candidates are ranked by
(tier, summed cue weight, consumer context) and the best --limit are
written in batches of 100, in rank order. A second sweep of narrow phrases
(SWEEP, HAND below) over the rows left out adds one more batch; the rest go,
for the record, to work-labels/hunt_infosec_rest.tsv. A per-cue count is
printed.

Usage: python3 scripts/hunt_infosec.py [--main /work/main] [--limit 800] [--first 42]
"""
import argparse, glob, os, re, sys, unicodedata
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402

TIER3 = [
    # the first draw's cues
    "诈骗", "盗刷", "泄露", "泄漏", "骚扰电话", "被盗", "实名", "个人信息", "隐私", "冒充", "验证码",
    "钓鱼(?!岛|台)", "盗号", "冒用", "木马", "信息安全", "被骗", "骗子电话", "推销电话", "垃圾短信", "盗用",
    # extensions
    "泄密", "骚扰短信", "骚扰信息", "轰炸", "陌生电话", "陌生号码", "陌生来电", "诈骗电话", "营销电话", "广告电话",
    "广告短信", "垃圾信息", "垃圾电话", "盗取", "冒名", "假冒.{0,4}(客服|官方|银行|工作人员|公安|警察)",
    "假客服", "假的客服", "骗子短信", "诈骗短信", "黑客", "中病毒", "电脑病毒", "手机病毒", "病毒软件",
    "手机号被", "号码被", "信息被", "资料被", "账户被", "账号被", "帐号被", "帐户被", "号被", "卡被",
    "被刷", "异地登录", "异常登录", "登录异常", "套路贷", "非法获取", "卖信息", "买卖信息", "(信息|资料|号码).{0,4}卖给",
    "被注册", "被开通", "扣款不明", "莫名.{0,4}扣", "不明扣款", "个人资料", "身份信息", "客户信息", "用户信息",
    "不是本人", "不是我本人", "非本人", "不知情", "未经授权", "没有授权", "他人使用", "别人(在)?用我",
    "被人(用|冒|盗|开|办|注册|乱开|偷)", "身份证(号|被|复印件|信息)", "用我的身份证", "我的身份证", "偷拍", "针孔",
    "人肉", "监听", "窃听", "电信诈骗", "网络诈骗", "骗走", "骗取",
    "自称.{0,8}(客服|工作人员|警察|公安|银行|快递|淘宝|京东|移动|联通|电信|航空|机票)", "谎称",
]
TIER2 = [
    "骚扰", "身份证", "(?<!藏地|芬奇)密码(?!学)", "中奖", "刷单", "网贷", "贷款", "绑定", "解绑", "转账", "汇款",
    "银行卡", "冻结", "(读取|获取|上传|泄露|爆|盗|偷).{0,4}通讯录", "(获取|读取|索取|申请|要求|索要|开放).{0,6}权限",
    "权限.{0,6}(获取|读取|通讯录|短信|定位|隐私)", "推销", "拦截",
    "(点|点击|点开|打开|发来|发的|短信|陌生|诈骗|钓鱼).{0,6}链接|链接.{0,8}(诈骗|钓鱼|病毒|木马|扣费|中奖)", "网址",
    "补卡", "挂失", "(手机|钱包|卡).{0,3}(丢|被偷)", "被偷", "(?<!强|防)盗(?!版|墓|门|铃|窃团|贼)", "擅自",
    "未经.{0,6}同意", "别人的(号|账号|帐号|卡|身份|信息|名)", "陌生人",
    "(账户|账号|帐号|帐户|资金|财产|信息|个人|隐私|支付|密码)安全", "出卖", "积分兑换", "积分清零",
    "(余额|钱|积分|话费).{0,4}(没了|少了|不见)", "被登录", "乱开", "开通了", "摄像头.{0,8}(房间|卫生间|浴室)",
    "一直打电话", "天天打电话", "每天打电话", "打电话.{0,6}推", "陌生来电|骚扰来电|来电.{0,6}(推销|骚扰|诈骗|广告)",
    "自称", "屏蔽.{0,6}(短信|号码|电话)", "(从未|从来没有?|从没|并未|根本没有?)(在.{1,8})?(订|预订|预定|下单|办理|办过|注册|开通|申请|用过)|(没有?|未)(办理|开通|注册|申请|订购|定制)过",
    "有人.{0,8}(冒|用我|以我|打电话|发短信|登录|登陆|盗|偷)", "(收到|接到).{0,10}(短信|电话).{0,20}(中奖|积分|兑换|退款|理赔|改签|取消|冻结|升级|补偿)",
]
# fraud words that in these corpora mostly accuse a merchant or the company itself (service or
# product by the schema): tier 2, but they add only 1 to the rank score
FRAUD = ["受骗", "欺诈", "骗钱", "骗了", "骗子", "欺骗"]
TIER1 = ["骗", "短信", "扣费", "扣钱", "被扣", "扣款", "安全", "异常", "丢失", "病毒", "注册", "登录", "登陆", "号码",
         "账号", "帐号", "账户", "帐户", "他人", "假的", "山寨", "冒牌", "仿冒", "定位", "信用卡", "卖给",
         "密码", "通讯录", "权限", "链接", "来电"]
TIERS = [(3, TIER3), (2, TIER2), (2, FRAUD), (1, TIER1)]
WEIGHT = {c: (1 if c in FRAUD else t) for t, cues in TIERS for c in cues}
COMPILED = [(t, c, re.compile(c)) for t, cues in TIERS for c in cues]
REVIEWS = ("shopping", "hotel", "waimai")
# Second sweep over what the ranking left out. Written after reading the left-over stc3 rows and
# grepping the other left-overs: narrow phrases that the cue tiers rank too low (a Weibo post about a
# scammer has no consumer word, so its 骗子 was demoted; helpdesk turns about someone else's account
# or an unblockable caller use ordinary words). Each hit, and each hand-picked key below, goes to one
# extra batch after the ranked ones.
SWEEP = {
    "weibo": re.compile("骗子|被骗|受骗|骗了|骗走|诈骗|骗局|上当"),
    "stc3": re.compile("其他人的|别人的(账|帐|相册|号)|不属于我|不是我(本人)?(设|操作|开|办|订)|(没有经过|未经|没经过)授权"
                       "|私人号码|(封|屏蔽|拦截|停用).{0,6}(号码|电话)|骗人的还是真的|是不是.{0,8}(工作|官方|客服)电话|恶意链接"
                       "|防盗|原户主|原机主|不是用户本人|本人操作|号码.{0,4}(有人|别人)在用|有人在用|没有来电显示|此类号码"
                       "|那帮孙子|针对我注册|被人.{0,4}(打|发)"),
    "reviews": re.compile("网上骗子|被.{0,4}骗子.{0,6}(用|买|冒)|冒用|用我的(白条|账号|帐号|卡)"),
}
HAND = {  # read by hand in the left-over stc3 rows: a caller or SMS of doubtful origin, a number used by others
    ("stc3", "3881231193801004:0"), ("stc3", "3881231193801004:2"), ("stc3", "3904806370320235:0"),
    ("stc3", "3589745915941287:2"), ("stc3", "3912487956876921:2"), ("stc3", "3748186202295869:4"),
}


def swept(r):
    if (r["source"], r["id"]) in HAND:
        return True
    key = "weibo" if r["source"] in ("ewect", "nlpcc") else "stc3" if r["source"] == "stc3" else "reviews"
    return bool(SWEEP[key].search(r["text"]))


# weak cues in these corpora match mostly unrelated things (ewect "virus_*" = the epidemic)
CONSUMER = re.compile("客服|快递|退款|退货|商家|店家|银行|移动|联通|电信|航空|航班|外卖|物流|订单|售后|投诉|酒店|充值|话费|流量|信用卡|京东|淘宝|天猫|支付宝|微信|手机|电话|账号|帐号|短信")


def norm(t):  # as in sample_for_labelling.py
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", t)).lower()


def labelled_keys(main):
    keys = set()
    for fn in sorted(glob.glob(os.path.join(main, "data", "labels", "batch_*.tsv"))):
        with open(fn, encoding="utf-8") as f:
            for i, line in enumerate(f):
                c = line.rstrip("\n").split("\t")
                if i and len(c) >= 2:
                    keys.add((c[0], c[1]))
    return keys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--main", default=os.path.join(HERE, ".."), help="repository whose data/labels and work-labels are used")
    ap.add_argument("--limit", type=int, default=800)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--first", type=int, default=42, help="number of the first batch file")
    ap.add_argument("--dry", action="store_true", help="count only, write nothing")
    a = ap.parse_args()

    keys = labelled_keys(a.main)
    allrows = [r for r in corpus.rows() if r["text"].strip()]
    seen = {norm(r["text"]) for r in allrows if (r["source"], r["id"]) in keys}
    cands, dropped = [], Counter()
    for r in allrows:
        hits = [(t, c) for t, c, rx in COMPILED if rx.search(r["text"])]
        if not hits:
            continue
        if (r["source"], r["id"]) in keys:
            dropped["labelled"] += 1
            continue
        k = norm(r["text"])
        if len(k) < 4:
            dropped["short"] += 1
            continue
        tier = max(t for t, _ in hits)
        if len(r["text"]) > 600 and tier < 3:
            dropped["long"] += 1  # as in the first draw; kept only with a tier-3 cue
            continue
        if k in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(k)
        consumer = r["source"] in ("stc3", "ccb") or bool(CONSUMER.search(r["text"]))
        if r["source"] in ("ewect", "nlpcc") and not consumer and tier < 3:
            tier -= 1  # general Weibo chatter with a weak cue only
        if r["source"] in REVIEWS and tier == 2 and all(c in FRAUD or t < 2 for t, c in hits):
            tier = 1  # a review calling the seller 骗子/欺诈: service or product by the schema
        r["tier"], r["hits"] = tier, [c for _, c in hits]
        r["score"] = (tier, min(sum(WEIGHT[c] for t, c in hits if t >= 2), 6), consumer)  # capped: long texts hit many cues
        cands.append(r)
    # ties: the sources where real cases turn up most (customer-helpdesk chats, then Weibo posts) first
    order = {s: i for i, s in enumerate(["stc3", "ccb", "nlpcc", "ewect", "hotel", "waimai", "shopping"])}
    cands.sort(key=lambda r: (-r["score"][0], -r["score"][1], -r["score"][2], order[r["source"]]))
    take, rest = cands[: a.limit], cands[a.limit :]
    sweep = [r for r in rest if swept(r)]
    rest = [r for r in rest if not swept(r)]

    print(f"corpus rows {len(allrows)}; cue hits dropped: {dict(dropped)}; candidates {len(cands)}; "
          f"ranked and written {len(take)}; second sweep {len(sweep)}; left {len(rest)}")
    print("tiers (all candidates):", dict(sorted(Counter(r['tier'] for r in cands).items(), reverse=True)))
    print("tiers (written):", dict(sorted(Counter(r['tier'] for r in take).items(), reverse=True)))
    print("sources (written):", dict(Counter(r['source'] for r in take)))
    print("\ncue\ttier\tcandidates\twritten\tby source (written)")
    for t, cues in TIERS:
        for c in cues:
            n = sum(c in r["hits"] for r in cands)
            w = [r for r in take if c in r["hits"]]
            print(f"{c}\t{t}\t{n}\t{len(w)}\t{dict(Counter(r['source'] for r in w))}")
    if a.dry:
        return
    out = os.path.join(a.main, "work-labels", "batches")
    os.makedirs(out, exist_ok=True)
    clean = lambda t: re.sub(r"[\t\r\n]+", " ", t)
    chunks = [take[b : b + a.batch] for b in range(0, len(take), a.batch)] + ([sweep] if sweep else [])
    for n, chunk in enumerate(chunks):
        fn = os.path.join(out, f"batch_{a.first + n:03d}.tsv")
        with open(fn, "w", encoding="utf-8") as f:
            f.write("source\tid\ttext\n")
            for r in chunk:
                f.write(f"{r['source']}\t{r['id']}\t{clean(r['text'])}\n")
        print("wrote", fn, len(chunk))
    with open(os.path.join(a.main, "work-labels", "hunt_infosec_rest.tsv"), "w", encoding="utf-8") as f:
        f.write("source\tid\ttier\tcues\ttext\n")
        for r in rest:
            f.write(f"{r['source']}\t{r['id']}\t{r['tier']}\t{'|'.join(r['hits'])}\t{clean(r['text'])}\n")


if __name__ == "__main__":
    main()
