#!/usr/bin/env python3
"""A tiny synthetic Llama for the runtime's unit tests (they run under qemu-aarch64 too).

    python3 models/tiny_llm.py OUT_DIR [--seed N] [--variant q4|q4_1]

Random weights in GGUF layout go through the real exporter (`export_llm.write_export`), with a
byte-level tokenizer (one token per byte plus ChatML's three special tokens):
  q4    MatMulNBits, GatherBlockQuantized, RoPE, grouped attention, KV cache (tract's kernels);
  q4_1  the weights quantized to GGUF Q4_1 blocks (projections) and Q8_0 (the tied embedding)
        by the gguf package, run by edgevox's own ops from weights.bin.
Next to the model it writes `reference.json`: a plain numpy forward pass (float64, the same
quantized weights, keys and values rounded to f16 as the default cache stores them, and again
without that rounding for an f32 cache;
quantized weights; for q4_1 each product's input is first rounded to 8 bits per 32-block by
llama.cpp's reference rule with f32 scales, as edgevox's kernels do) giving the prompt's token ids, a greedy
continuation and the logits at every step of it, so the Rust side checks tract's execution
and edgevox's kernels against arithmetic done elsewhere. A few hundred KiB; generated in a
second, never committed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import export_llm as ex
from convert_whisper import byte_decoder
from fetch import sha256_of

CONFIG = ex.LlamaConfig(
    n_layers=2, hidden=64, ffn=128, n_heads=4, n_kv_heads=2, head_dim=16,
    vocab=256 + 3, context_length=128, rope_base=10000.0, rms_eps=1e-5,
)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
GREEDY_STEPS = 12


def random_tensors(cfg: ex.LlamaConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """GGUF-named tensors, scaled so activations stay near unit size through the layers."""
    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    kv = cfg.n_kv_heads * cfg.head_dim
    t = {"token_embd.weight": (0.2 * rng.standard_normal((cfg.vocab, cfg.hidden))).astype(np.float32),
         "output_norm.weight": norm(cfg.hidden)}
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        t.update({
            p + "attn_norm.weight": norm(cfg.hidden), p + "ffn_norm.weight": norm(cfg.hidden),
            p + "attn_q.weight": mat(cfg.hidden, cfg.hidden), p + "attn_k.weight": mat(kv, cfg.hidden),
            p + "attn_v.weight": mat(kv, cfg.hidden), p + "attn_output.weight": mat(cfg.hidden, cfg.hidden),
            p + "ffn_gate.weight": mat(cfg.ffn, cfg.hidden), p + "ffn_up.weight": mat(cfg.ffn, cfg.hidden),
            p + "ffn_down.weight": mat(cfg.hidden, cfg.ffn),
        })
    ex.check_tensors(cfg, t)
    return t


def byte_tokenizer() -> tuple[dict, dict[int, int]]:
    """A byte-level BPE without merges: token id b is byte b; specials follow."""
    chars = {b: c for c, b in byte_decoder().items()}
    vocab = {chars[b]: b for b in range(256)}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [
            {"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for i, s in enumerate(SPECIALS)
        ],
        "normalizer": None,
        "pre_tokenizer": ex.PRE_TOKENIZERS["gpt-2"],
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {**vocab, **{s: 256 + i for i, s in enumerate(SPECIALS)}},
            "merges": [],
        },
    }
    return tokenizer, vocab


def encode(text: str) -> list[int]:
    """The ids the tokenizer above gives `text`: specials whole, everything else byte by byte."""
    ids: list[int] = []
    rest = text
    while rest:
        hit = next((s for s in SPECIALS if rest.startswith(s)), None)
        if hit:
            ids.append(256 + SPECIALS.index(hit))
            rest = rest[len(hit):]
        else:
            ids.extend(rest[0].encode())
            rest = rest[1:]
    return ids


# --------------------------------------------------------------------------------------------
# The reference forward pass (numpy, float64), written from the Llama equations, not the graph.


def quantized(w: np.ndarray) -> np.ndarray:
    return ex.dequantize_q4_0(*ex.quantize_q4_0(w)).astype(np.float64)


def gguf_blocks(t: dict[str, np.ndarray]) -> dict[str, ex.RawTensor]:
    """The tensors as a Q4_1 GGUF stores them: Q4_1 projections, Q8_0 embedding."""
    import gguf
    from gguf.quants import quantize

    raw = {}
    for name, w in t.items():
        if w.ndim != 2:
            continue
        kind = gguf.GGMLQuantizationType.Q8_0 if name == "token_embd.weight" else gguf.GGMLQuantizationType.Q4_1
        raw[name] = ex.RawTensor(kind.name.lower(), np.ascontiguousarray(quantize(w, kind)))
    return raw


def dequantized(raw: ex.RawTensor, cols: int) -> np.ndarray:
    import gguf
    from gguf.quants import dequantize

    kind = {"q4_1": gguf.GGMLQuantizationType.Q4_1, "q8_0": gguf.GGMLQuantizationType.Q8_0}[raw.kind]
    return dequantize(raw.data, kind).reshape(raw.data.shape[0], cols).astype(np.float64)


def act_q8(x: np.ndarray) -> np.ndarray:
    """x rounded to 8 bits per 32-block as edgevox's kernels do (llama.cpp's reference rule
    with f32 scales): d = max|x| / 127 and 1/d in float32, q = round(x / d) with halves away
    from zero, clamped to ±127; returns d * q (the block's s = d Σq is then exact)."""
    b = x.reshape(-1, ex.BLOCK)
    d = (np.abs(b).max(axis=-1, keepdims=True).astype(np.float32) / np.float32(127.0))
    inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d != 0)
    v = b * inv.astype(np.float64)
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -127, 127)
    return (q * d.astype(np.float64)).reshape(x.shape)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, positions, cfg):
    """x [heads, seq, D], rotate-half layout."""
    half = cfg.head_dim // 2
    inv = 1.0 / cfg.rope_base ** (np.arange(half) * 2 / cfg.head_dim)
    ang = np.asarray(positions)[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def f16(x: np.ndarray) -> np.ndarray:
    """What an f16 KV cache holds: rounded to half precision, nearest even."""
    return x.astype(np.float16).astype(np.float64)


def forward(cfg: ex.LlamaConfig, t: dict[str, np.ndarray], ids: list[int],
            raw: dict[str, ex.RawTensor] | None = None, kv_f16: bool = True) -> np.ndarray:
    """Logits of the last position for the whole sequence `ids` (`raw`: the q4_1 variant;
    `kv_f16`: keys after RoPE and values rounded to f16, as edgevox's default cache stores
    them, and the query and the probabilities rounded to f16 for their products with them, as
    llama.cpp's CPU attention does and edgevox's does with an f16 cache)."""
    D, H, KV = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    if raw is None:
        weight = lambda name, f=None: quantized(f(t[name]) if f else t[name])
        act = lambda x: x
        product = lambda x, name, f=None: x @ weight(name, f).T
    else:
        def blocks(name, f=None):
            r = raw[name]
            return ex.RawTensor(r.kind, f(r.data)) if f else r
        weight = lambda name, f=None: dequantized(blocks(name, f), t[name].shape[1])
        act = act_q8
        product = lambda x, name, f=None: act(x) @ weight(name, f).T
    emb = weight("token_embd.weight")
    h = emb[ids]
    S = len(ids)
    mask = np.triu(np.full((S, S), -np.inf), k=1)
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        lin = lambda x, name, f=None: product(x, p + name, f)
        x = rms_norm(h, t[p + "attn_norm.weight"], cfg.rms_eps)
        q = lin(x, "attn_q.weight", lambda w: ex.unpermute_qk(w, H)).reshape(S, H, D).transpose(1, 0, 2)
        k = lin(x, "attn_k.weight", lambda w: ex.unpermute_qk(w, KV)).reshape(S, KV, D).transpose(1, 0, 2)
        v = lin(x, "attn_v.weight").reshape(S, KV, D).transpose(1, 0, 2)
        q, k = rope(q, range(S), cfg), rope(k, range(S), cfg)
        if kv_f16:  # and llama.cpp's f16 arithmetic: the query rounded for the f16 keys
            q, k, v = f16(q), f16(k), f16(v)
        out = np.empty((H, S, D))
        for head in range(H):
            kv = head // (H // KV)
            s = q[head] @ k[kv].T / np.sqrt(D) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            probs = s / s.sum(axis=-1, keepdims=True)
            out[head] = (f16(probs) if kv_f16 else probs) @ v[kv]
        h = h + lin(out.transpose(1, 0, 2).reshape(S, H * D), "attn_output.weight")
        x = rms_norm(h, t[p + "ffn_norm.weight"], cfg.rms_eps)
        gate, up = lin(x, "ffn_gate.weight"), lin(x, "ffn_up.weight")
        h = h + lin(gate / (1 + np.exp(-gate)) * up, "ffn_down.weight")
    x = rms_norm(h[-1], t["output_norm.weight"], cfg.rms_eps)
    return act(x) @ emb.T


def build(out_dir: Path, seed: int = 8, variant: str = "q4", attention: str = "edgevox") -> dict:
    rng = np.random.default_rng(seed)
    cfg = CONFIG
    tensors = random_tensors(cfg, rng)
    raw = gguf_blocks(tensors) if variant == "q4_1" else None
    tokenizer, _ = byte_tokenizer()
    chat = {
        "system": {"prefix": "<|im_start|>system\n", "suffix": "<|im_end|>\n"},
        "user": {"prefix": "<|im_start|>user\n", "suffix": "<|im_end|>\n"},
        "assistant": {"prefix": "<|im_start|>assistant\n", "suffix": "<|im_end|>\n"},
        "generation_prompt": "<|im_start|>assistant\n",
    }
    meta = {"source": {"file": f"synthetic seed {seed}", "sha256": ""},
            "bos_id": 256, "stop_ids": [257, 258], "chat": chat}
    ex.write_export(out_dir, cfg, tensors, tokenizer, meta, variant, raw, attention)

    ids = encode(PROMPT)
    seq, steps, steps_f32 = list(ids), [], []
    for _ in range(GREEDY_STEPS):
        logits = forward(cfg, tensors, seq, raw)
        steps.append([round(float(v), 6) for v in logits])
        exact = forward(cfg, tensors, seq, raw, kv_f16=False)
        steps_f32.append([round(float(v), 6) for v in exact])
        seq.append(int(np.argmax(logits)))
    ref = {
        "prompt": PROMPT, "prompt_ids": ids,
        "greedy": seq[len(ids):],
        "step_logits": steps,  # step 0: after the prompt; step i: after greedy[..i]
        "step_logits_f32": steps_f32,  # the same steps with an f32 cache (no rounding)
        "model_sha256": sha256_of(out_dir / "model.onnx"),
    }
    (out_dir / "reference.json").write_text(json.dumps(ref))
    return ref


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--variant", choices=["q4", "q4_1"], default="q4")
    args = ap.parse_args(argv)
    ref = build(args.out_dir, args.seed, args.variant)
    print(f"tiny-llm: {args.out_dir} ({len(ref['prompt_ids'])}-token prompt, greedy {ref['greedy']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
