#!/usr/bin/python3
"""bpe_ref.py TOKENIZER_JSON TEXTFILE - token ids of the text by
tokenizer.json's own rules, independently of qshard and llama.cpp: GPT-2
byte-level BPE (pre_tokenizer ByteLevel with use_regex): the GPT-2 split
regex, bytes spelled through bytes_to_unicode, then merges applied lowest
rank first (Sennrich et al. 2016; GPT-2's encoder.py).  Needs the 'regex'
module for \\p{L}.  Prints the ids as JSON."""
import json
import sys

import regex

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    tj = json.load(open(sys.argv[1], encoding="utf-8"))
    text = open(sys.argv[2], encoding="utf-8").read()
    model = tj["model"]
    assert model["type"] == "BPE" and tj["pre_tokenizer"]["type"] == "ByteLevel"
    vocab = model["vocab"]
    ranks = {}
    for i, m in enumerate(model["merges"]):
        a, b = m.split(" ") if isinstance(m, str) else m
        ranks[(a, b)] = i
    b2u = bytes_to_unicode()
    ids = []
    for piece in regex.findall(GPT2_SPLIT, text):
        word = [b2u[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = [(ranks.get((word[i], word[i + 1]), 1 << 60), i) for i in range(len(word) - 1)]
            best, at = min(pairs)
            if best == 1 << 60:
                break
            word = word[:at] + [word[at] + word[at + 1]] + word[at + 2:]
        ids += [vocab[w] for w in word]
    print(json.dumps(ids))


main()
