#!/usr/bin/env python3
"""collect_stats.py - calibration statistics for qshard's calibration-aware
schemes, from a PyTorch model and calibration text.

For every nn.Linear, forward hooks on its input X (tokens x cols) accumulate
  H = X^T X / tokens        -> --out-hessian    (NAME -> f32[cols, cols], or
                                                 NAME.hessian_diag -> f32[cols]
                                                 with --diag-only)
  mean(X^2) per column      -> --out-importance (NAME -> f32[cols])
keyed by the Hugging Face weight name (e.g. model.layers.0.mlp.up_proj.weight),
the format qshard-convert --hessian / --importance read (see qshard-convert(1)).

The model runs on the whole text at once (one forward pass per window of
--ctx tokens); the accumulators are float64 on the CPU, so peak memory is the
model plus 8*cols^2 bytes per linear layer (--diag-only: 8*cols).

--model DIR loads a Hugging Face folder with transformers when it is
installed; without transformers a Llama folder with a byte vocabulary (256
tokens, as contrib/bench/train_llama.py writes) runs on llama_ref.py, and
anything else (or --model tiny) falls back to a small built-in Llama-like
model with random weights, which is what the tests run.

safetensors is written by the small writer below (struct + json), so the
safetensors package is not needed.
"""
import argparse
import json
import struct
import sys

import torch
import torch.nn as nn


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, float32 torch tensor), written in that order."""
    header = {}
    blobs = []
    off = 0
    for name, t in tensors:
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)  # the format allows trailing spaces
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


# ------------------------------------------------ a tiny Llama-like model

class TinyBlock(nn.Module):
    def __init__(self, d, ff, heads):
        super().__init__()
        self.heads = heads
        self.input_layernorm = nn.LayerNorm(d)
        self.self_attn = nn.Module()
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.self_attn, n, nn.Linear(d, d, bias=False))
        self.post_attention_layernorm = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, ff, bias=False)
        self.mlp.up_proj = nn.Linear(d, ff, bias=False)
        self.mlp.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        h = self.input_layernorm(x)
        a = self.self_attn
        q, k, v = (m(h).view(b, t, self.heads, -1).transpose(1, 2)
                   for m in (a.q_proj, a.k_proj, a.v_proj))
        att = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + a.o_proj((att @ v).transpose(1, 2).reshape(b, t, d))
        h = self.post_attention_layernorm(x)
        m = self.mlp
        return x + m.down_proj(nn.functional.silu(m.gate_proj(h)) * m.up_proj(h))


class TinyLlama(nn.Module):
    """Names match Hugging Face Llama: model.layers.N.mlp.up_proj.weight..."""

    def __init__(self, vocab=256, d=64, ff=128, layers=2, heads=4):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList(TinyBlock(d, ff, heads) for _ in range(layers))
        self.model.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.model.embed_tokens(ids)
        for blk in self.model.layers:
            x = blk(x)
        return self.lm_head(self.model.norm(x))


def load_model(path):
    """(model, tokenize(text) -> LongTensor of ids)"""
    if path and path != "tiny":
        try:
            import transformers
        except ImportError:
            # A Llama folder with byte tokens (contrib/bench/train_llama.py
            # writes one) runs on llama_ref.py's implementation instead.
            import os
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import llama_ref
            cfg = os.path.join(path, "config.json")
            import json as _json
            c = _json.load(open(cfg)) if os.path.isfile(cfg) else {}
            if c.get("model_type") == "llama" and c.get("vocab_size") == 256:
                return llama_ref.load_hf(path), \
                    lambda s: torch.tensor(list(s.encode("utf-8")), dtype=torch.long)
            print("collect_stats: transformers is not installed; using the built-in "
                  "tiny model", file=sys.stderr)
        else:
            tok = transformers.AutoTokenizer.from_pretrained(path)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                path, torch_dtype=torch.float32)
            return model, lambda s: torch.tensor(tok(s)["input_ids"], dtype=torch.long)
    torch.manual_seed(0)
    model = TinyLlama()
    return model, lambda s: torch.tensor(list(s.encode("utf-8")), dtype=torch.long) % 256


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="Hugging Face folder, or 'tiny'")
    ap.add_argument("--text", required=True, help="calibration text file (UTF-8)")
    ap.add_argument("--tokens", type=int, default=4096, help="calibration tokens to use")
    ap.add_argument("--ctx", type=int, default=512, help="tokens per forward pass")
    ap.add_argument("--out-hessian", help="safetensors of H = X^T X / tokens per tensor")
    ap.add_argument("--out-importance", help="safetensors of mean squared inputs per column")
    ap.add_argument("--diag-only", action="store_true",
                    help="store only diag(H) (NAME.hessian_diag)")
    args = ap.parse_args(argv)
    if not args.out_hessian and not args.out_importance:
        ap.error("nothing to do: give --out-hessian and/or --out-importance")
    if args.tokens <= 0 or args.ctx <= 0:
        ap.error("--tokens and --ctx must be positive")

    model, tokenize = load_model(args.model)
    model.eval()
    with open(args.text, encoding="utf-8", errors="replace") as f:
        ids = tokenize(f.read())[: args.tokens]
    if ids.numel() == 0:
        ap.error("the calibration text gives no tokens")

    full = bool(args.out_hessian) and not args.diag_only
    acc = {}  # weight name -> [count, sum x^2 (cols), X^T X (cols, cols) or None]

    def hook_for(name):
        def hook(mod, inp, out):
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).to(torch.float64)
            a = acc.get(name)
            if a is None:
                c = x.shape[1]
                a = acc[name] = [0, torch.zeros(c, dtype=torch.float64),
                                 torch.zeros(c, c, dtype=torch.float64) if full else None]
            a[0] += x.shape[0]
            a[1] += (x * x).sum(0)
            if full:
                a[2] += x.T @ x
        return hook

    hooks = [m.register_forward_hook(hook_for(n + ".weight"))
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for s in range(0, ids.numel(), args.ctx):
            model(ids[s: s + args.ctx].unsqueeze(0))
    for h in hooks:
        h.remove()

    names = sorted(acc)
    meta = {"tokens": int(ids.numel()), "tool": "qshard collect_stats.py"}
    if args.out_importance:
        write_safetensors(args.out_importance,
                          [(n, acc[n][1] / acc[n][0]) for n in names], meta)
    if args.out_hessian:
        if full:
            out = [(n, acc[n][2] / acc[n][0]) for n in names]
        else:
            out = [(n + ".hessian_diag", acc[n][1] / acc[n][0]) for n in names]
        write_safetensors(args.out_hessian, out, meta)
    print("collect_stats: %d linear layers, %d tokens" % (len(names), ids.numel()),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
