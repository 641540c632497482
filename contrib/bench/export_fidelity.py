#!/usr/bin/python3
"""export_fidelity.py - how close llama.cpp's logits from a qshard GGUF export
come to the exact dequantized weights, on the small Llama that bench-quality
trains on real text (not on mkckpt's spiky weights).

For each scheme: convert, export natively (no requantization) and as F32
(the same file's dequantized weights), evaluate a fixed text with llama.cpp
(tests/cli/llama_eval.mjs, F32 KV cache), and print the largest logit
difference and the largest per-position KL between the two.  The only
difference between the two GGUFs is how llama.cpp multiplies: quantized
weights with q8 activations against F32 x F32, so these figures are
llama.cpp's own activation quantization.  One more row compares the F32
export run by llama.cpp with a torch forward pass (contrib/python/llama_ref.py)
of the weights `qshard unpack` gives: that is what export itself adds.

The model has a byte vocabulary (256 tokens), so a byte-level BPE
tokenizer.json with no merges is written beside the trained checkpoint.

  contrib/bench/bench-export-fidelity     (wrapper: finds qshard and python)
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import quality  # noqa: E402  (llama_checkpoint: the cached trained model)
import llama_ref  # noqa: E402

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
EVAL = os.path.join(TOP, "tests", "cli", "llama_eval.mjs")
TEXT = b"The GNU General Public License is a free, copyleft license for software"
SCHEMES = [
    ("rtn g32 as Q4_1", ["--scheme", "rtn:bits=4,group=32"]),
    ("q4_k_m preset", ["--scheme-preset", "q4_k_m"]),
    ("gguf q8_0", ["--scheme", "gguf:type=q8_0"]),
]


def gpt2_byte_chars():
    """GPT-2's bytes_to_unicode(): byte -> printable character."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def write_byte_tokenizer(folder):
    chars = gpt2_byte_chars()
    tok = {"version": "1.0", "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                             "trim_offsets": True, "use_regex": True},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                       "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": {chars[b]: b for b in range(256)}, "merges": []}}
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False}, f)


def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [x / s for x in e]


def compare(a, b):
    maxdiff = maxkl = 0.0
    for ra, rb in zip(a, b):
        maxdiff = max(maxdiff, max(abs(x - y) for x, y in zip(ra, rb)))
        pa, pb = softmax(ra), softmax(rb)
        maxkl = max(maxkl, sum(p * (math.log(p) - math.log(q)) for p, q in zip(pa, pb) if p > 0))
    return maxdiff, maxkl


def llama_logits(gguf, tokens, work):
    out = os.path.join(work, os.path.basename(gguf) + ".json")
    run(["node", EVAL, "eval", gguf, ",".join(map(str, tokens)), out])
    return json.load(open(out))["logits"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qshard", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    ck = quality.llama_checkpoint(a.cache, a.python)
    work = os.path.join(a.cache, "fidelity-%d" % os.getpid())
    os.makedirs(work)
    try:
        src = os.path.join(work, "ckpt")
        shutil.copytree(ck["dir"], src)
        write_byte_tokenizer(src)
        tokens = list(TEXT)
        print("%-18s %12s %12s" % ("weights", "max |dlogit|", "max KL"))
        for i, (label, args) in enumerate(SCHEMES):
            q = os.path.join(work, "m%d.qshard" % i)
            run([a.qshard, "convert", src, "-o", q] + args)
            run([a.qshard, "export", q, "-o", q + ".gguf"])
            run([a.qshard, "export", q, "-o", q + ".f32.gguf", "--type", "f32"])
            d, k = compare(llama_logits(q + ".f32.gguf", tokens, work),
                           llama_logits(q + ".gguf", tokens, work))
            print("%-18s %12.4g %12.3g" % (label, d, k))
            if i == 0:
                # what export adds: llama.cpp on the F32 export vs torch on
                # the same dequantized weights
                un = os.path.join(work, "unpacked")
                run([a.qshard, "unpack", q, "-o", un, "--dtype", "f32"])
                shutil.copy(os.path.join(src, "config.json"), un)
                import torch
                m = llama_ref.load_hf(un).eval()
                with torch.no_grad():
                    ref = m(torch.tensor([tokens]))[0].double().tolist()
                d, k = compare(ref, llama_logits(q + ".f32.gguf", tokens, work))
                print("%-18s %12.4g %12.3g" % ("F32 export vs torch", d, k))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
