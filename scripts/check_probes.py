#!/usr/bin/env python3
"""Check data/probes/probes.tsv: its format, its labels, and that no probe is a near-copy of a
labelled text.

The probe file is an evaluation set that is never trained or tuned on (data/probes/README.md).
This script

1. validates the format: the exact header, 9 tab-separated columns, ids p0001, p0002, ... unique
   and in order, a known family, the category and its 0/1 column (the primary's column is 1),
   escalation 0..3, flags known, unique and in the schema order, text of 10..200 characters with
   no tab, newline or surrounding whitespace, no two probes with the same text;
2. checks the family rules of the brief (counts; threat families at level 3 with their flag;
   negated threats below 3 with a flag; conditional threats at 3; ...);
3. compares every probe with every labelled text: the corpus texts of the rows in
   data/labels/batch_*.tsv and data/labels/double/*.tsv (looked up by (source, id) through
   scripts/corpus.py) and the text column of data/labels/authored.tsv, by character-3-gram
   Jaccard similarity on the text with all whitespace removed. It prints the maximum similarity
   per family and fails if any probe reaches 0.5.

Exit status 0 when everything passes, 1 otherwise. Run: python3 scripts/check_probes.py [probes.tsv]
No corpus text is printed, only keys.
"""
import csv, glob, os, re, sys
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = os.path.dirname(HERE)
sys.path.insert(0, HERE)

HEADER = ["id", "family", "category", "product", "service", "information_security",
          "escalation", "flags", "text"]
CATEGORIES = ["product", "service", "information_security"]
FLAGS = ["litigation", "regulator", "media", "police_crime", "collective_action",
         "privacy_breach", "collection_abuse", "self_harm_violence"]
THRESHOLD = 0.5
MIN_TOTAL = 360

# family -> (minimum count, allowed levels, a flag every row must carry or None)
FAMILIES = {
    "threat_litigation": (20, {3}, "litigation"),
    "threat_regulator": (20, {3}, "regulator"),
    "threat_media": (20, {3}, "media"),
    "threat_police": (20, {3}, "police_crime"),
    "threat_collective": (20, {3}, "collective_action"),
    "threat_self_harm": (20, {3}, "self_harm_violence"),
    "privacy_plain": (20, {0, 1, 2, 3}, "privacy_breach"),
    "collection_abuse": (20, {0, 1, 2, 3}, "collection_abuse"),
    "negated_threat": (20, {0, 1, 2}, None),
    "conditional_threat": (20, {3}, None),
    "obfuscated": (40, {0, 1, 2, 3}, None),
    "infosec_vs_billing": (20, {0, 1, 2, 3}, None),
    "sarcasm": (20, {1, 2}, None),
    "praise_with_complaint_words": (20, {0, 1, 2}, None),
    "calm_fault": (20, {0, 1}, None),
}

WS = re.compile(r"\s+")


def grams(text):
    t = WS.sub("", text)
    if len(t) < 3:
        return {t} if t else set()
    return {t[i:i + 3] for i in range(len(t) - 2)}


def read_probes(path, errors):
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        raw = f.read()
    if raw.startswith("\ufeff"):
        errors.append("file starts with a BOM")
        raw = raw[1:]
    if "\r" in raw:
        errors.append("file contains carriage returns")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        errors.append("empty file")
        return rows
    if lines[0].split("\t") != HEADER:
        errors.append(f"bad header: {lines[0]!r}")
    seen_ids, seen_texts = set(), {}
    for n, line in enumerate(lines[1:], 2):
        cols = line.split("\t")
        where = f"line {n}"
        if len(cols) != len(HEADER):
            errors.append(f"{where}: {len(cols)} columns, want {len(HEADER)}")
            continue
        r = dict(zip(HEADER, cols))
        where = f"line {n} ({r['id']})"
        want_id = f"p{n - 1:04d}"
        if r["id"] != want_id:
            errors.append(f"{where}: id should be {want_id}")
        if r["id"] in seen_ids:
            errors.append(f"{where}: duplicate id")
        seen_ids.add(r["id"])
        if r["family"] not in FAMILIES:
            errors.append(f"{where}: unknown family {r['family']!r}")
        if r["category"] not in CATEGORIES:
            errors.append(f"{where}: unknown category {r['category']!r}")
        for c in CATEGORIES:
            if r[c] not in ("0", "1"):
                errors.append(f"{where}: {c} must be 0 or 1")
        if r["category"] in CATEGORIES and r[r["category"]] != "1":
            errors.append(f"{where}: primary column {r['category']} is not 1")
        if r["escalation"] not in ("0", "1", "2", "3"):
            errors.append(f"{where}: escalation must be 0..3")
        flags = r["flags"].split(",") if r["flags"] else []
        bad = [x for x in flags if x not in FLAGS]
        if bad:
            errors.append(f"{where}: unknown flags {bad}")
        elif len(set(flags)) != len(flags):
            errors.append(f"{where}: repeated flag")
        elif flags != sorted(flags, key=FLAGS.index):
            errors.append(f"{where}: flags not in schema order")
        t = r["text"]
        if not (10 <= len(t) <= 200):
            errors.append(f"{where}: text length {len(t)} outside 10..200")
        if t != t.strip():
            errors.append(f"{where}: text has surrounding whitespace")
        if any(ch in t for ch in "\n\r\t\u2028\u2029\x85"):
            errors.append(f"{where}: text contains a line or tab character")
        if t in seen_texts:
            errors.append(f"{where}: same text as {seen_texts[t]}")
        seen_texts[t] = r["id"]
        r["flag_list"] = flags
        rows.append(r)
    return rows


def check_families(rows, errors):
    count = Counter(r["family"] for r in rows)
    if len(rows) < MIN_TOTAL:
        errors.append(f"{len(rows)} probes, want at least {MIN_TOTAL}")
    for fam, (least, levels, flag) in FAMILIES.items():
        if count[fam] < least:
            errors.append(f"family {fam}: {count[fam]} probes, want at least {least}")
    for r in rows:
        if r["family"] not in FAMILIES or r["escalation"] not in "0123":
            continue
        least, levels, flag = FAMILIES[r["family"]]
        lvl = int(r["escalation"])
        where = f"{r['id']} ({r['family']})"
        if lvl not in levels:
            errors.append(f"{where}: level {lvl} not allowed in this family")
        if flag and flag not in r["flag_list"]:
            errors.append(f"{where}: must carry {flag}")
        if r["family"] in ("negated_threat", "conditional_threat") and not r["flag_list"]:
            errors.append(f"{where}: a (negated or conditional) threat must raise its flag")
        if r["family"] == "privacy_plain" and r["category"] != "information_security":
            errors.append(f"{where}: privacy_plain rows are information_security")
        if r["family"] == "praise_with_complaint_words" and lvl > 0 and not r["flag_list"]:
            errors.append(f"{where}: praise without a flag should be level 0")
    ivb = Counter(r["category"] for r in rows if r["family"] == "infosec_vs_billing")
    n = sum(ivb.values())
    if n and not (0.35 <= ivb["information_security"] / n <= 0.65):
        errors.append(f"infosec_vs_billing: {dict(ivb)} is not about half information_security")
    return count


def labelled_texts(errors):
    """(key, text) for every labelled text: corpus rows of the label files and authored texts."""
    import corpus
    keys = set()
    files = sorted(glob.glob(os.path.join(MAIN, "data", "labels", "batch_*.tsv")))
    files += sorted(glob.glob(os.path.join(MAIN, "data", "labels", "double", "*.tsv")))
    for fn in files:
        with open(fn, encoding="utf-8") as f:
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                keys.add((r["source"], r["id"]))
    out, found = [], set()
    for r in corpus.rows():
        k = (r["source"], r["id"])
        if k in keys and k not in found:
            found.add(k)
            out.append((f"{k[0]} {k[1]}", r["text"]))
    missing = keys - found
    if missing:
        errors.append(f"{len(missing)} labelled keys not found in the corpora, e.g. {sorted(missing)[:3]}")
    n_auth = 0
    with open(os.path.join(MAIN, "data", "labels", "authored.tsv"), encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            out.append((f"authored {r['id']}", r["text"]))
            n_auth += 1
    return out, len(found), n_auth


def near_duplicates(rows, refs):
    index = defaultdict(list)
    ref_grams = []
    for j, (_, text) in enumerate(refs):
        g = grams(text)
        ref_grams.append(g)
        for x in g:
            index[x].append(j)
    best = {}
    for r in rows:
        g = grams(r["text"])
        hits = Counter()
        for x in g:
            hits.update(index.get(x, ()))
        top = (0.0, None)
        for j, inter in hits.items():
            s = inter / (len(g) + len(ref_grams[j]) - inter)
            if s > top[0]:
                top = (s, refs[j][0])
        best[r["id"]] = top
    return best


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(MAIN, "data", "probes", "probes.tsv")
    errors = []
    rows = read_probes(path, errors)
    count = check_families(rows, errors)
    refs, n_corpus, n_auth = labelled_texts(errors)
    best = near_duplicates(rows, refs)

    print(f"{path}: {len(rows)} probes")
    print(f"compared with {len(refs)} labelled texts ({n_corpus} corpus rows of the label files, "
          f"{n_auth} authored), character-3-gram Jaccard, whitespace removed, threshold {THRESHOLD}")
    print(f"{'family':30} {'n':>4} {'max_sim':>8}  probe   nearest")
    fam_rows = defaultdict(list)
    for r in rows:
        fam_rows[r["family"]].append(r)
    for fam in FAMILIES:
        rs = fam_rows.get(fam, [])
        if not rs:
            print(f"{fam:30} {0:>4}")
            continue
        r = max(rs, key=lambda r: best[r["id"]][0])
        s, key = best[r["id"]]
        print(f"{fam:30} {count[fam]:>4} {s:8.3f}  {r['id']}   {key}")
    overall = max((best[r["id"]][0] for r in rows), default=0.0)
    print(f"{'all':30} {len(rows):>4} {overall:8.3f}")
    dups = [(r["id"], *best[r["id"]]) for r in rows if best[r["id"]][0] >= THRESHOLD]
    for pid, s, key in dups:
        errors.append(f"{pid}: similarity {s:.3f} >= {THRESHOLD} with {key}")
    if errors:
        print(f"FAIL: {len(errors)} problem(s)")
        for e in errors:
            print("  " + e)
        return 1
    print("OK: format valid, no probe reaches the near-duplicate threshold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
