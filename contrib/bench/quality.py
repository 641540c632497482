#!/usr/bin/env python3
"""quality.py - the engine of contrib/bench/bench-quality (run that).

Judges every qshard scheme, and ggml's k-quants as peers, on two checkpoints
qshard did not generate:

  llama   a small Llama trained on real text (train_llama.py; trained once,
          cached in $QSHARD_BENCH_CACHE, default ~/.cache/qshard-bench)
  synth   synth_ckpt.py's numpy checkpoint (Student-t bodies, log-normal row
          scales, hot channels, salient weights; its own Hessians)

Per run, over the tensors quantized (the 2-D weights of the decoder blocks;
embed_tokens and lm_head are kept in f32 by every run, so the runs differ
only where the schemes differ):
  bpw nominal / disk   qshard's summary line (disk = after zstd); ggml's
                       block size (ggml has no container: disk = nominal)
  wSQNR dB             mean over tensors of 10 log10(|W|^2 / |W - Q|^2)
  oSQNR dB             mean over tensors of 10 log10(tr(W H W^T) / tr(E H E^T)),
                       E = W - Q and H = X^T X / n from *held-out* inputs
                       (not the calibration split the schemes saw)
  ppl, KL              llama only: perplexity (per byte) of the held-out split
                       and mean KL(P_ref || P_quant) of the next-byte
                       distributions, P_ref the unquantized model's
Calibration for --hessian / --importance: collect_stats.py on the calibration
split (llama) or synth_ckpt.py's calibration Hessians (synth).
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import ggml_peer  # noqa: E402
import llama_ref  # noqa: E402
import train_llama  # noqa: E402

# label, scheme (qshard --scheme, or ggml:TYPE), calibration: - | imp | hes
DEFAULT_RUNS = """
rtn-3            rtn:bits=3                       -
rtn-4            rtn:bits=4                       -
ggml-q2_K        ggml:q2_K                        -
ggml-q3_K        ggml:q3_K                        -
ggml-q4_K        ggml:q4_K                        -
ggml-q3_K+imat   ggml:q3_K                        imp
ggml-q4_K+imat   ggml:q4_K                        imp
adpq-3           adpq:bits=3                      -
adpq-3-s0        adpq:bits=3,search=0             -
adpq-3-a.02      adpq:bits=3,alpha=0.02           -
adpq-3-g256f16   adpq:bits=3,group=256,scales=f16,alpha=0.02 -
adpq-3+hes       adpq:bits=3                      hes
adpq-4           adpq:bits=4,alpha=0.025          -
adpq-4-a.0175    adpq:bits=4                      -
adpq-4-g256f16   adpq:bits=4,group=256,scales=f16,alpha=0.028 -
adpq-4+hes       adpq:bits=4,alpha=0.025          hes
daq-4            daq                              -
daq-4+imp        daq                              imp
daq-4+hes        daq                              hes
claq-3.12        claq:bits=3.12                   -
claq-3.12+hes    claq:bits=3.12                   hes
gptq-3           gptq:bits=3                      hes
gptq-4           gptq:bits=4                      hes
gptq-clip-3      gptq-clip:bits=3                 hes
"""

# the settings train_llama.py is run with; part of the cache key.  120
# steps (~123k tokens) is what 2 busy cores train in ~10-35 minutes; the
# model is then barely past byte unigrams, so KL and ppl move little;
# QSHARD_BENCH_STEPS trains longer (a new cache entry).
TRAIN_ARGS = ["--steps", os.environ.get("QSHARD_BENCH_STEPS", "120"), "--seed", "1",
              "--threads", "2"]
TRAIN_VERSION = "1"
EVAL_WINDOWS, CTX = 64, 128  # held-out tokens scored: 64 x 128
CALIB_TOKENS = 32768


def log(*a):
    print("bench-quality:", *a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd[:3]), r.returncode,
                                                 (r.stderr or r.stdout).strip()[-500:]))
    return r.stdout


def parse_runs(text):
    runs = []
    for line in text.strip().splitlines():
        line = line.split("#")[0].strip()
        if line:
            label, scheme, calib = line.split()
            runs.append((label, scheme, calib))
    return runs


# ------------------------------------------------ the two checkpoints

def llama_checkpoint(cache, py):
    docs = train_llama.corpus_documents(6 << 20)
    corpus = hashlib.sha256(b"".join(b for _, b in docs)).hexdigest()
    key = hashlib.sha256((TRAIN_VERSION + " ".join(TRAIN_ARGS) + corpus).encode()).hexdigest()[:12]
    d = os.path.join(cache, "llama-" + key)
    if not os.path.isfile(os.path.join(d, "meta.json")):
        log("training the Llama into %s (once; ~10 min on 2 cores)" % d)
        subprocess.run([py, os.path.join(HERE, "train_llama.py"), "--out", d] + TRAIN_ARGS,
                       check=True)
    stats = os.path.join(d, "stats")
    os.makedirs(stats, exist_ok=True)
    cs = os.path.join(HERE, "..", "python", "collect_stats.py")
    for split, tokens, name in (("calib", CALIB_TOKENS, "calib"),
                                ("heldout", EVAL_WINDOWS * CTX, "eval")):
        h = os.path.join(stats, name + "-hessian.safetensors")
        if not os.path.isfile(h):
            log("collecting %s statistics" % name)
            sh([py, cs, "--model", os.path.join(d, "ckpt"), "--text",
                os.path.join(d, split + ".txt"), "--tokens", str(tokens), "--ctx", str(CTX),
                "--out-hessian", h + ".tmp", "--out-importance",
                os.path.join(stats, name + "-importance.safetensors")])
            os.replace(h + ".tmp", h)
    meta = json.load(open(os.path.join(d, "meta.json")))
    return {"kind": "llama", "dir": os.path.join(d, "ckpt"), "root": d, "meta": meta,
            "hessian": os.path.join(stats, "calib-hessian.safetensors"),
            "importance": os.path.join(stats, "calib-importance.safetensors"),
            "eval_hessian": os.path.join(stats, "eval-hessian.safetensors")}


def synth_checkpoint(cache, py):
    d = os.path.join(cache, "synth-v1")
    if not os.path.isfile(os.path.join(d, "hessian-eval.safetensors")):
        log("generating the synthetic checkpoint into %s" % d)
        subprocess.run([py, os.path.join(HERE, "synth_ckpt.py"), "--out", d], check=True)
    return {"kind": "synth", "dir": os.path.join(d, "model.safetensors"), "root": d,
            "hessian": os.path.join(d, "hessian.safetensors"),
            "importance": os.path.join(d, "importance.safetensors"),
            "eval_hessian": os.path.join(d, "hessian-eval.safetensors")}


def is_quantized(name, t):
    return t.dim() == 2 and ".layers." in name


# ------------------------------------------------ one run

def run_qshard(qshard, ck, scheme, calib, work):
    out = os.path.join(work, "q.qshard")
    cmd = [qshard, "convert", ck["dir"], "-o", out, "--force", "--progress", "none",
           "-T", "2", "--scheme", scheme, "--keep", "embed_tokens|lm_head"]
    if calib == "imp":
        cmd += ["--importance", ck["importance"]]
    elif calib == "hes":
        cmd += ["--hessian", ck["hessian"]]
    t0 = time.time()
    s = sh(cmd)
    secs = time.time() - t0
    m = re.search(r"([0-9.]+) bpw nominal, ([0-9.]+) bpw on disk", s)
    un = os.path.join(work, "unpacked")
    shutil.rmtree(un, ignore_errors=True)
    sh([qshard, "unpack", out, "-o", un, "--dtype", "f32"])
    q = llama_ref.read_folder(un)
    return q, float(m.group(1)), float(m.group(2)), secs


def run_ggml(g, typ, ref, calib, ck):
    imp = llama_ref.read_safetensors(ck["importance"]) if calib == "imp" else {}
    q, t0 = {}, time.time()
    for n, t in ref.items():
        if is_quantized(n, t):
            im = imp[n].numpy() if n in imp else None
            q[n] = torch.from_numpy(g.roundtrip(typ, t.numpy(), im))
    return q, g.bpw(typ), g.bpw(typ), time.time() - t0


def sqnr(sig, err):
    return 10.0 * np.log10(sig / err) if err > 0 else float("inf")


def tensor_scores(ref, q, eval_h):
    ws, os_ = [], []
    for n, w in ref.items():
        if not is_quantized(n, w):
            continue
        e = (w - q[n]).double()
        wd = w.double()
        ws.append(sqnr((wd * wd).sum().item(), (e * e).sum().item()))
        h = eval_h[n].double()
        os_.append(sqnr(((wd @ h) * wd).sum().item(), ((e @ h) * e).sum().item()))
    return float(np.mean(ws)), float(np.mean(os_))


class LlamaEval:
    def __init__(self, ck):
        self.ref = llama_ref.read_folder(ck["dir"])
        self.cfg = json.load(open(os.path.join(ck["dir"], "config.json")))
        held = open(os.path.join(ck["root"], "heldout.txt"), "rb").read()
        n = EVAL_WINDOWS * CTX
        ids = torch.tensor(list(held[: n + 1]), dtype=torch.long)
        self.x, self.y = ids[:n].view(-1, CTX), ids[1: n + 1].view(-1, CTX)
        self.ref_lp = self.logprobs(self.ref)

    def logprobs(self, sd):
        m = llama_ref.Llama(self.cfg)
        m.load_state_dict(sd, strict=True)
        m.eval()
        with torch.no_grad():
            return torch.cat([F.log_softmax(m(self.x[i: i + 8]), -1)
                              for i in range(0, self.x.shape[0], 8)]).reshape(-1, 256)

    def score(self, q):
        sd = dict(self.ref)
        sd.update({n: q[n] for n in self.ref if is_quantized(n, self.ref[n])})
        lp = self.logprobs(sd)
        ppl = float(torch.exp(F.nll_loss(lp, self.y.reshape(-1))))
        kl = float((self.ref_lp.exp() * (self.ref_lp - lp)).sum(-1).mean())
        return ppl, kl


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qshard", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--only", choices=["llama", "synth"])
    ap.add_argument("--runs", help="file of 'label scheme calib' lines (default: built in)")
    ap.add_argument("--out", help="also write the report (markdown) here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    runs = parse_runs(open(a.runs).read() if a.runs else DEFAULT_RUNS)
    libpath = ggml_peer.find_lib()
    g = ggml_peer.Ggml(libpath) if libpath else None
    if g is None:
        log("ggml's libggml-base.so not found (npm install --prefix "
            "~/.cache/qshard-bench/node-llama-cpp @node-llama-cpp/linux-x64, or set "
            "GGML_BASE_LIB): the ggml rows are skipped")
    cks = []
    if a.only != "synth":
        cks.append(llama_checkpoint(a.cache, a.python))
    if a.only != "llama":
        cks.append(synth_checkpoint(a.cache, a.python))
    report = []
    work = os.path.join(a.cache, "work-%d" % os.getpid())
    os.makedirs(work, exist_ok=True)
    try:
        for ck in cks:
            ref = llama_ref.read_folder(ck["dir"])
            eval_h = llama_ref.read_safetensors(ck["eval_hessian"])
            lev = LlamaEval(ck) if ck["kind"] == "llama" else None
            title = "## %s" % ck["kind"]
            if ck["kind"] == "llama":
                mt = ck["meta"]
                title += " (%d parameters, held-out loss %.3f nats/byte, corpus sha256 %s)" % (
                    mt["parameters"], mt["heldout_loss_nats_per_byte"], mt["corpus_sha256"][:16])
            report += ["", title, "",
                       "| run | scheme | calib | bpw | disk | wSQNR dB | oSQNR dB | ppl | KL | s |",
                       "|---|---|---|---|---|---|---|---|---|---|"]
            if lev:
                ppl0, _ = lev.score({n: ref[n] for n in ref})
                report.append("| f32 | - | - | 32 | 32 | inf | inf | %.4f | 0 | - |" % ppl0)
            for label, scheme, calib in runs:
                try:
                    if scheme.startswith("ggml:"):
                        if g is None:
                            continue
                        q, bpw, disk, secs = run_ggml(g, scheme[5:], ref, calib, ck)
                    else:
                        q, bpw, disk, secs = run_qshard(a.qshard, ck, scheme, calib, work)
                except (RuntimeError, ValueError) as e:
                    log("%s %s: %s" % (ck["kind"], label, e))
                    report.append("| %s | %s | %s | error: %s |" % (label, scheme, calib,
                                                                  str(e).splitlines()[-1][:120]))
                    continue
                wsq, osq = tensor_scores(ref, q, eval_h)
                ppl, kl = lev.score(q) if lev else (float("nan"), float("nan"))
                row = "| %s | %s | %s | %.3f | %.3f | %.2f | %.2f | %s | %s | %.1f |" % (
                    label, scheme, calib, bpw, disk, wsq, osq,
                    "%.4f" % ppl if lev else "-", "%.3g" % kl if lev else "-", secs)
                report.append(row)
                log(ck["kind"], row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(report) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
