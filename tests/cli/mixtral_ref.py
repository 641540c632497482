#!/usr/bin/python3
"""mixtral_ref.py DIR TOKENS OUT.json [--swap-experts] - the logits of a
MixtralForCausalLM checkpoint (f32 safetensors in DIR, as `qshard unpack
--dtype f32` writes them) for the comma-separated token ids, every
position, in llama_eval.mjs's JSON form: an independent forward pass in
float64 torch, written from the architecture as Hugging Face's
modeling_mixtral defines it (RMSNorm, rotate-half rotary embeddings,
grouped-query causal attention; per token a softmax router whose top
num_experts_per_tok weights are renormalised and mix the experts'
w2(silu(w1 x) * w3 x)).  --swap-experts exchanges experts 0 and 1 of every
layer: the negative case, a stacking order that must show in the logits."""
import json
import os
import struct
import sys

import numpy as np
import torch


def load(d):
    """name -> float64 tensor of model.safetensors (F32 or BF16)."""
    b = open(os.path.join(d, "model.safetensors"), "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, e = v["data_offsets"]
        if v["dtype"] == "F32":
            arr = np.frombuffer(b, dtype="<f4", count=(e - a) // 4, offset=8 + n + a)
        elif v["dtype"] == "BF16":  # the upper half of an f32
            u = np.frombuffer(b, dtype="<u2", count=(e - a) // 2, offset=8 + n + a)
            arr = (u.astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit("%s: %s is %s, not F32 or BF16" % (d, k, v["dtype"]))
        out[k] = torch.from_numpy(arr.astype(np.float64).reshape(v["shape"]))
    return out


def rms(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def main():
    d, toks, out = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], sys.argv[3]
    swap = "--swap-experts" in sys.argv[4:]
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = load(d)
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    ne, k_used = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    T = len(toks)
    x = W["model.embed_tokens.weight"][toks]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, nh, hd).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        a = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5 + mask, -1) @ v
        x = x + a.transpose(0, 1).reshape(T, nh * hd) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        probs = torch.softmax(h @ W[p + "block_sparse_moe.gate.weight"].T, -1)
        top, idx = probs.topk(k_used, -1)
        top = top / top.sum(-1, keepdim=True)
        moe = torch.zeros_like(h)
        for t in range(T):
            for j in range(k_used):
                e = int(idx[t, j])
                if swap and e < 2:
                    e = 1 - e
                ep = p + "block_sparse_moe.experts.%d." % e
                g = torch.nn.functional.silu(h[t] @ W[ep + "w1.weight"].T)
                moe[t] += top[t, j] * ((g * (h[t] @ W[ep + "w3.weight"].T)) @ W[ep + "w2.weight"].T)
        x = x + moe
    x = rms(x, W["model.norm.weight"], eps)
    logits = x @ W["lm_head.weight"].T
    json.dump({"logits": logits.tolist()}, open(out, "w"))


main()
