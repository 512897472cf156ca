"""Inter-annotator agreement between the main labels and an independent second
labelling: data/labels/double/second_labeller.tsv (200 texts, round 1) or
data/labels/double/second_round2.tsv (1,000 texts, round 2).
Usage: python3 scripts/agreement.py [SECOND_FILE]

When a sibling file first_<suffix> exists next to SECOND_FILE = second_<suffix>
(data/labels/double/first_round2.tsv next to second_round2.tsv), the first
labeller's original labels are read from it instead of from the main labels.
The main labels of those texts have since been adjudicated, so comparing them
with the second labeller would no longer measure inter-annotator agreement."""
import glob
import os
import sys

FLAGS = ["litigation", "regulator", "media", "police_crime", "collective_action", "privacy_breach", "collection_abuse", "self_harm_violence"]
CATS = ["product", "service", "information_security"]


def load(f):
    return {tuple(c[:2]): c for c in (l.split("\t") for l in open(f, encoding="utf-8").read().splitlines()[1:])}


def kappa(a, b, labels, quadratic=False):
    n, k = len(a), len(labels)
    idx = {l: i for i, l in enumerate(labels)}
    O = [[0] * k for _ in range(k)]
    for x, y in zip(a, b):
        O[idx[x]][idx[y]] += 1
    ha = [sum(r) for r in O]
    hb = [sum(O[i][j] for i in range(k)) for j in range(k)]
    w = lambda i, j: ((i - j) / (k - 1)) ** 2 if quadratic else float(i != j)
    num = sum(w(i, j) * O[i][j] / n for i in range(k) for j in range(k))
    den = sum(w(i, j) * ha[i] * hb[j] / n / n for i in range(k) for j in range(k))
    return 1 - num / den if den else 1.0


second_file = sys.argv[1] if len(sys.argv) > 1 else "data/labels/double/second_labeller.tsv"
head, name = os.path.split(second_file)
first_file = os.path.join(head, "first_" + name[len("second_"):]) if name.startswith("second_") else None
main = {}
if first_file and os.path.isfile(first_file):
    main.update(load(first_file))
else:
    for f in glob.glob("data/labels/*.tsv"):
        main.update(load(f))
second = load(second_file)
keys = [k for k in second if k in main]
A, B = [main[k] for k in keys], [second[k] for k in keys]
print(f"texts: {len(keys)}")
print(f"| label | kappa | raw agreement |\n|---|---|---|")
print(f"| category (primary) | {kappa([a[2] for a in A], [b[2] for b in B], CATS):.3f} | {sum(a[2] == b[2] for a, b in zip(A, B)) / len(A):.3f} |")
print(f"| escalation (Cohen) | {kappa([a[6] for a in A], [b[6] for b in B], '0123'):.3f} | {sum(a[6] == b[6] for a, b in zip(A, B)) / len(A):.3f} |")
print(f"| escalation (quadratic weighted) | {kappa([a[6] for a in A], [b[6] for b in B], '0123', True):.3f} | |")
for i, c in zip((3, 4, 5), CATS):
    print(f"| touches {c} | {kappa([a[i] for a in A], [b[i] for b in B], '01'):.3f} | |")
for f in FLAGS:
    a = ["1" if f in x[7].split(",") else "0" for x in A]
    b = ["1" if f in x[7].split(",") else "0" for x in B]
    k = f"{kappa(a, b, '01'):.3f}" if "1" in a + b else "n/a (no positives)"
    print(f"| flag {f} ({a.count('1')}/{b.count('1')} positives) | {k} | |")
tp = sum(len(set(a[7].split(",")) & set(b[7].split(",")) - {""}) for a, b in zip(A, B))
na = sum(len(set(a[7].split(",")) - {""}) for a in A)
nb = sum(len(set(b[7].split(",")) - {""}) for b in B)
print(f"| flags micro-F1 (main vs second) | {2 * tp / (na + nb) if na + nb else 1.0:.3f} | |")
