"""Read the third-party corpora in ../shared/corpora as (source, id, text) rows.

Keys follow ../shared/corpora/README.md:
  stc3      "<dialogue id>:<turn index>"  (customer turns only; utterances joined)
  shopping  1-based data row of sophon/online_shopping_10_cats.csv
  waimai    1-based data row of sophon/waimai_10k.csv
  hotel     1-based data row of sophon/ChnSentiCorp_htl_all.csv
  ewect     "<file stem>:<id>" of ewect/*.txt
  nlpcc     1-based data row of nlpcc/nlpcc2013.tsv
  ccb       1-based data row of ccb/bank_ticket_sentences.csv
The Rust reader in crates/kesu-train/src/corpus.rs uses the same keys; keep them in step.
"""
import csv, json, os, glob

ROOT = os.environ.get("KESU_CORPORA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora"))


def rows():
    """Yield dicts with source, id, text and meta (the corpus' own label, if any)."""
    d = json.load(open(os.path.join(ROOT, "stc3", "train_data_cn.json"), encoding="utf-8"))
    for dlg in d:
        for i, t in enumerate(dlg["turns"]):
            if t["sender"] == "customer":
                yield dict(source="stc3", id=f"{dlg['id']}:{i}", text="".join(t["utterances"]), meta="")
    for src, fn in [("shopping", "online_shopping_10_cats.csv"), ("waimai", "waimai_10k.csv"), ("hotel", "ChnSentiCorp_htl_all.csv")]:
        with open(os.path.join(ROOT, "sophon", fn), encoding="utf-8-sig") as f:
            for n, r in enumerate(csv.DictReader(f), 1):
                yield dict(source=src, id=str(n), text=(r.get("review") or "").lstrip("\ufeff"),
                           meta=(r.get("cat", "") + ":" if "cat" in r else "") + r["label"])
    for fn in sorted(glob.glob(os.path.join(ROOT, "ewect", "*.txt"))):
        stem = os.path.splitext(os.path.basename(fn))[0]
        for r in json.load(open(fn, encoding="utf-8")):
            yield dict(source="ewect", id=f"{stem}:{r['id']}", text=r["content"], meta=r.get("label", ""))
    with open(os.path.join(ROOT, "nlpcc", "nlpcc2013.tsv"), encoding="utf-8") as f:
        # despite its name the file is comma-separated: 标签,文本
        for n, r in enumerate(csv.DictReader(f), 1):
            yield dict(source="nlpcc", id=str(n), text=r["文本"] or "", meta=r["标签"])
    with open(os.path.join(ROOT, "ccb", "bank_ticket_sentences.csv"), encoding="utf-8") as f:
        for n, r in enumerate(csv.DictReader(f), 1):
            yield dict(source="ccb", id=str(n), text=r["dataset"], meta=r["class1"] + "/" + r["class2"])
