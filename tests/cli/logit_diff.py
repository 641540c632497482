#!/usr/bin/python3
"""logit_diff.py A.json B.json - compares two llama_eval.mjs logit dumps:
prints the largest absolute logit difference and the largest per-position
KL(softmax(A) || softmax(B)) (natural log), and "ok" when every logit is a
finite number in both."""
import json
import math
import sys


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [x / s for x in e]


a = json.load(open(sys.argv[1]))["logits"]
b = json.load(open(sys.argv[2]))["logits"]
if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
    print("shape mismatch")
    sys.exit(1)
maxdiff = 0.0
maxkl = 0.0
finite = True
for ra, rb in zip(a, b):
    if any(v is None or not math.isfinite(v) for v in ra + rb):
        finite = False
        continue
    maxdiff = max(maxdiff, max(abs(x - y) for x, y in zip(ra, rb)))
    pa, pb = softmax(ra), softmax(rb)
    kl = sum(p * (math.log(p) - math.log(q)) for p, q in zip(pa, pb) if p > 0)
    maxkl = max(maxkl, kl)
print("maxdiff %.6g kl %.6g %s" % (maxdiff, maxkl, "ok" if finite else "nonfinite"))
