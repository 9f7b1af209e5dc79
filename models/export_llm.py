#!/usr/bin/env python3
"""Export a Llama-architecture GGUF (SmolLM2) to an ONNX model that tract runs.

    python3 models/export_llm.py GGUF OUT_DIR [--variant q4_1|q4|f32] [--attention edgevox|onnx]

Writes into OUT_DIR:
  model.onnx      the decoder: token ids in, the last position's logits out
  weights.bin     (q4_1 only) the GGUF's weight blocks, byte for byte, one tensor after the
                  other at 64-byte boundaries: the runtime memory-maps it
  tokenizer.json  for the `tokenizers` crate, rebuilt from the GGUF's vocab and merges
  llm.json        hyper-parameters, chat template pieces, stop tokens, and the size and
                  sha256 of the two files above (the runtime checks them before use)

Graph layout: input_ids [batch, seq] i64 and logit_rows [L] (its length L says how many last
positions get logits: 1 for a prompt or a step, 1 + drafts when speculated tokens are
verified) in, logits [batch, L, vocab] out (EdgevoxLastRows picks the positions). Each layer's attention is EdgevoxAttention (`ai.edgevox` domain): RoPE, the KV cache and
grouped-query attention in one op; the runtime keeps the cache outside the graph and writes it
in place. Norms are SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization.
`--attention onnx` writes the same model in standard ops instead, with the KV cache as
explicit inputs/outputs (past_key_values.{i}.key/.value, present.{i}.key/.value, plus
position_ids and an additive attention_bias): what ONNX Runtime runs for the reference checks.

Variants:
  q4_1  (the default) the GGUF's own blocks, never re-quantized: Q4_1 projections, the Q8_0
        tied embedding that is also the LM head (one buffer). They run in edgevox's own ops,
        `ai.edgevox` domain: EdgevoxBlockLinear (y = x @ W^T, activations quantized to 8 bits
        per 32-block, integer block dot products) and EdgevoxBlockGather (embedding rows).
        Q, K and V are one product (then Split), so are gate and up: the activation is
        quantized once per stage. The op's attributes say where its tensor is in weights.bin.
  q4    today's MatMulNBits graph, re-quantized to Q4_0 (kept for comparison)
  f32   the GGUF's weights exactly as they dequantize (plain MatMul and Gather): the reference
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fetch import sha256_of

BLOCK = 32  # MatMulNBits / GatherBlockQuantized block size, tract's Q4_0 block
MS = "com.microsoft"


class ExportError(RuntimeError):
    pass


@dataclass
class LlamaConfig:
    n_layers: int
    hidden: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    context_length: int
    rope_base: float
    rms_eps: float


# --------------------------------------------------------------------------------------------
# Reading the GGUF


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is not None:
            return default
        raise ExportError(f"GGUF metadata has no {key}")
    return f.contents()


def read_config(reader) -> LlamaConfig:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ExportError(f"architecture is {arch!r}; only 'llama' is supported")
    n_heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    vocab = len(_field(reader, "tokenizer.ggml.tokens"))
    return LlamaConfig(
        n_layers=int(_field(reader, "llama.block_count")),
        hidden=hidden,
        ffn=int(_field(reader, "llama.feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        head_dim=hidden // n_heads,
        vocab=int(_field(reader, "llama.vocab_size", vocab)),
        context_length=int(_field(reader, "llama.context_length")),
        rope_base=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
    )


@dataclass
class RawTensor:
    """A tensor's blocks as the GGUF stores them: [rows, row_bytes] uint8 and the block type."""
    kind: str  # q4_0, q4_1 or q8_0
    data: np.ndarray


RAW_KINDS = {"Q4_0": "q4_0", "Q4_1": "q4_1", "Q8_0": "q8_0"}
BLOCK_BYTES = {"q4_0": 18, "q4_1": 20, "q8_0": 34}


def read_raw(reader) -> dict[str, RawTensor]:
    """The quantized tensors' blocks, untouched (a type edgevox has no kernel for is refused
    by the q4_1 export, naming the tensor)."""
    out = {}
    for t in reader.tensors:
        kind = RAW_KINDS.get(t.tensor_type.name)
        if t.tensor_type.name == "F32":
            continue
        if kind is None:
            out[t.name] = RawTensor(t.tensor_type.name.lower(), np.zeros((0, 0), np.uint8))
            continue
        rows = int(t.shape[1]) if len(t.shape) > 1 else 1
        data = np.ascontiguousarray(np.asarray(t.data, dtype=np.uint8).reshape(rows, -1))
        out[t.name] = RawTensor(kind, data)
    return out


def read_tensors(reader) -> dict[str, np.ndarray]:
    """Every tensor dequantized to f32, in numpy order ([out_features, in_features])."""
    from gguf.quants import dequantize

    out = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type)
        expect = tuple(int(d) for d in reversed(t.shape))
        if w.shape != expect:
            w = w.reshape(expect)
        out[t.name] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's HF->GGUF row permutation of attn_q / attn_k.

    The converter reorders each head's rows from HF's halves layout to interleaved pairs so
    that GGML's default RoPE applies; undoing it lets the graph use the halves layout.
    """
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_tensors(cfg: LlamaConfig, t: dict[str, np.ndarray]) -> None:
    kv = cfg.n_kv_heads * cfg.head_dim
    want = {"token_embd.weight": (cfg.vocab, cfg.hidden), "output_norm.weight": (cfg.hidden,)}
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        want.update({
            p + "attn_norm.weight": (cfg.hidden,),
            p + "ffn_norm.weight": (cfg.hidden,),
            p + "attn_q.weight": (cfg.hidden, cfg.hidden),
            p + "attn_k.weight": (kv, cfg.hidden),
            p + "attn_v.weight": (kv, cfg.hidden),
            p + "attn_output.weight": (cfg.hidden, cfg.hidden),
            p + "ffn_gate.weight": (cfg.ffn, cfg.hidden),
            p + "ffn_up.weight": (cfg.ffn, cfg.hidden),
            p + "ffn_down.weight": (cfg.hidden, cfg.ffn),
        })
    for name, shape in want.items():
        if name not in t:
            raise ExportError(f"GGUF has no tensor {name}")
        if t[name].shape != shape:
            raise ExportError(f"{name} has shape {t[name].shape}, expected {shape}")
    if "output.weight" in t:
        raise ExportError("untied output.weight is not supported (SmolLM2 ties it to the embedding)")


# --------------------------------------------------------------------------------------------
# Quantization


def quantize_q4_0(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 4-bit, blocks of 32 along the last axis, zero point 8 (GGML's Q4_0 rule).

    Returns (packed uint8 [rows, cols/2], scales f32 [rows, cols/32]). Scales are rounded to
    f16 because tract stores Q4_0 scales as f16: both runtimes then see the same weight.
    """
    rows, cols = w.shape
    if cols % BLOCK:
        raise ExportError(f"{cols} columns is not a multiple of the block size {BLOCK}")
    blocks = w.reshape(rows, cols // BLOCK, BLOCK)
    idx = np.abs(blocks).argmax(axis=-1)
    peak = np.take_along_axis(blocks, idx[..., None], axis=-1)[..., 0]
    scale = (peak / -8.0).astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
    q = np.clip(np.floor(blocks * inv[..., None] + 8.5), 0, 15).astype(np.uint8)
    q = q.reshape(rows, cols)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    return packed, scale


def dequantize_q4_0(packed: np.ndarray, scale: np.ndarray) -> np.ndarray:
    rows = packed.shape[0]
    q = np.empty((rows, packed.shape[1] * 2), dtype=np.float32)
    q[:, 0::2] = packed & 0x0F
    q[:, 1::2] = packed >> 4
    return ((q.reshape(rows, -1, BLOCK) - 8.0) * scale[..., None]).reshape(rows, -1)


# --------------------------------------------------------------------------------------------
# Graph building


class WeightFile:
    """weights.bin being laid out: each tensor's blocks at a 64-byte boundary."""
    ALIGN = 64

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0
        self.index: dict[str, dict] = {}

    def add(self, name: str, raw: RawTensor, cols: int) -> dict:
        if raw.kind not in BLOCK_BYTES:
            raise ExportError(f"tensor {name} is {raw.kind.upper()}: edgevox's kernels read Q4_0, Q4_1 and Q8_0")
        if name in self.index:
            return self.index[name]
        rows = raw.data.shape[0]
        if cols % BLOCK or raw.data.shape[1] != cols // BLOCK * BLOCK_BYTES[raw.kind]:
            raise ExportError(f"tensor {name}: {raw.data.shape[1]} bytes a row do not hold {cols} {raw.kind} weights")
        pad = -self.size % self.ALIGN
        self.parts.append(b"\0" * pad)
        self.size += pad
        blob = raw.data.tobytes()
        entry = {"type": raw.kind, "rows": rows, "cols": cols, "offset": self.size, "bytes": len(blob)}
        self.parts.append(blob)
        self.size += len(blob)
        self.index[name] = entry
        return entry

    def write(self, path: Path) -> None:
        with open(path, "wb") as f:
            for p in self.parts:
                f.write(p)


EDGEVOX = "ai.edgevox"


class Graph:
    def __init__(self, variant: str, raw: dict[str, RawTensor] | None = None):
        self.variant = variant
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self.raw = raw or {}
        self.weights = WeightFile()

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", out=None, **attrs):
        base = self.name(op_type.lower())
        outs = out if out is not None else [f"{base}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, domain=domain, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def block_linear(self, x: str, name: str, raw: RawTensor, k: int, out=None) -> str:
        """y = x @ W.T with W the GGUF's blocks [N, K] (edgevox's own op)."""
        e = self.weights.add(name, raw, k)
        return self.op("EdgevoxBlockLinear", [x], domain=EDGEVOX, out=out, tensor=name,
                       type=e["type"], N=e["rows"], K=k, offset=e["offset"], bytes=e["bytes"])

    def linear(self, x: str, w: np.ndarray, name: str, out=None) -> str:
        """y = x @ w.T with w [N, K]."""
        n, k = w.shape
        if self.variant == "q4_1":
            return self.block_linear(x, name, self.raw_rows(name), k, out=out)
        if self.variant == "f32":
            wt = self.const(name + ".weight", w.T.astype(np.float32))
            return self.op("MatMul", [x, wt], out=out)
        packed, scale = quantize_q4_0(w)
        b = self.const(name + ".qweight", packed.reshape(n, k // BLOCK, BLOCK // 2))
        s = self.const(name + ".scales", scale.reshape(-1))
        return self.op("MatMulNBits", [x, b, s], domain=MS, out=out, K=k, N=n, bits=4, block_size=BLOCK)


    def raw_rows(self, name: str, n_head: int | None = None) -> RawTensor:
        """The GGUF blocks of `name`.weight, with attn_q / attn_k's rows un-permuted (whole rows
        of blocks move, so the blocks themselves are untouched)."""
        key = name + ".weight"
        if key not in self.raw:
            raise ExportError(f"tensor {key} is not quantized in the GGUF (edgevox's q4_1 export needs its blocks)")
        r = self.raw[key]
        if n_head is not None and r.kind in BLOCK_BYTES:
            r = RawTensor(r.kind, np.ascontiguousarray(unpermute_qk(r.data, n_head)))
        return r

    def fused_linear(self, x: str, parts: list[tuple[str, RawTensor]], name: str, k: int) -> list[str]:
        """One product for several weights sharing an input (rows stacked), then Split."""
        kinds = {r.kind for _, r in parts}
        if len(kinds) != 1:
            raise ExportError(f"{name}: {', '.join(p for p, _ in parts)} mix block types {sorted(kinds)}")
        stacked = RawTensor(kinds.pop(), np.concatenate([r.data for _, r in parts], axis=0))
        y = self.block_linear(x, name, stacked, k)
        sizes = self.const(self.name("split"), np.array([r.data.shape[0] for _, r in parts], dtype=np.int64))
        return self.op("Split", [y, sizes], n_out=len(parts), axis=-1)


def rope_tables(cfg: LlamaConfig) -> tuple[np.ndarray, np.ndarray]:
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (cfg.rope_base ** (np.arange(0, half, dtype=np.float64) * 2 / cfg.head_dim))
    ang = np.arange(cfg.context_length, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


VARIANTS = ("q4_1", "q4", "f32")


def onnx_attention(g: Graph, cfg: LlamaConfig, i: int, q: str, k: str, v: str,
                   inputs: list, outputs: list) -> str:
    """Layer i's attention in standard ONNX ops, with the KV cache as explicit graph inputs
    and outputs (`--attention onnx`): only for ONNX Runtime, which the reference checks run.
    Grouped MatMul + Softmax, com.microsoft RotaryEmbedding on the halves layout."""
    D, KV, H = cfg.head_dim, cfg.n_kv_heads, cfg.hidden
    group = cfg.n_heads // KV
    i64 = lambda *v: g.const(g.name("shape"), np.array(v, dtype=np.int64))
    if "cos_cache" not in {t.name for t in g.inits}:
        cos, sin = rope_tables(cfg)
        g.const("cos_cache", cos)
        g.const("sin_cache", sin)
        g.const("attn_scale", np.array(1.0 / np.sqrt(D), dtype=np.float32))
        inputs += [
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
            helper.make_tensor_value_info("attention_bias", TensorProto.FLOAT, ["sequence_length", "total_sequence_length"]),
        ]
    past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
    pres_k, pres_v = f"present.{i}.key", f"present.{i}.value"
    for name in (past_k, past_v):
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch_size", KV, "past_sequence_length", D]))
    for name in (pres_k, pres_v):
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch_size", KV, "total_sequence_length", D]))

    def heads(y, n):  # [B, S, n*D] -> [B, n, S, D]
        return g.op("Transpose", [g.op("Reshape", [y, i64(0, 0, n, D)])], perm=[0, 2, 1, 3])

    q4 = g.op("RotaryEmbedding", [heads(q, cfg.n_heads), "position_ids", "cos_cache", "sin_cache"],
              domain=MS, interleaved=0)
    k4 = g.op("RotaryEmbedding", [heads(k, KV), "position_ids", "cos_cache", "sin_cache"],
              domain=MS, interleaved=0)
    k_all = g.op("Concat", [past_k, k4], axis=2, out=[pres_k])
    v_all = g.op("Concat", [past_v, heads(v, KV)], axis=2, out=[pres_v])
    # Grouped attention: query head j*group+r reads KV head j.
    qg = g.op("Reshape", [g.op("Mul", [q4, "attn_scale"]), i64(0, KV, group, -1, D)])  # [B,KV,G,S,D]
    kt = g.op("Unsqueeze", [g.op("Transpose", [k_all], perm=[0, 1, 3, 2]), i64(2)])  # [B,KV,1,D,T]
    scores = g.op("Add", [g.op("MatMul", [qg, kt]), "attention_bias"])  # [B,KV,G,S,T]
    probs = g.op("Softmax", [scores], axis=-1)
    ctx = g.op("MatMul", [probs, g.op("Unsqueeze", [v_all, i64(2)])])  # [B,KV,G,S,D]
    ctx = g.op("Reshape", [ctx, i64(0, cfg.n_heads, -1, D)])
    return g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), i64(0, 0, H)])


ATTENTIONS = ("edgevox", "onnx")


def build_model(cfg: LlamaConfig, t: dict[str, np.ndarray], variant: str,
                raw: dict[str, RawTensor] | None = None,
                attention: str = "edgevox") -> tuple[onnx.ModelProto, WeightFile]:
    if variant not in VARIANTS:
        raise ExportError(f"unknown variant {variant!r} ({', '.join(VARIANTS)})")
    if attention not in ATTENTIONS:
        raise ExportError(f"unknown attention {attention!r} ({', '.join(ATTENTIONS)})")
    if attention == "onnx" and variant == "q4_1":
        raise ExportError("the q4_1 variant runs edgevox's own ops: ONNX Runtime cannot run it anyway")
    if variant == "q4_1" and not raw:
        raise ExportError("the q4_1 variant needs the GGUF's quantized blocks")
    g = Graph(variant, raw)
    H, D, KV = cfg.hidden, cfg.head_dim, cfg.n_kv_heads
    i64 = lambda *v: g.const(g.name("shape"), np.array(v, dtype=np.int64))

    emb = t["token_embd.weight"]
    if variant == "q4_1":
        e = g.weights.add("token_embd", g.raw_rows("token_embd"), cfg.hidden)
        h = g.op("EdgevoxBlockGather", ["input_ids"], domain=EDGEVOX, tensor="token_embd",
                 type=e["type"], N=e["rows"], K=cfg.hidden, offset=e["offset"], bytes=e["bytes"])
    elif variant == "f32":
        table = g.const("embed.weight", emb)
        h = g.op("Gather", [table, "input_ids"], axis=0)
    else:
        packed, escale = quantize_q4_0(emb)
        data = g.const("embed.qweight", packed)
        esc = g.const("embed.scales", escale)
        h = g.op("GatherBlockQuantized", [data, "input_ids", esc], domain=MS,
                 bits=4, block_size=BLOCK, gather_axis=0, quantize_axis=1)

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    if attention == "edgevox":
        # Its length says how many last positions get logits (1 for a prompt or a plain step,
        # 1 + drafts to verify speculated tokens); its values are not read.
        inputs.append(helper.make_tensor_value_info("logit_rows", TensorProto.INT64, ["logit_rows"]))
    outputs = [helper.make_tensor_value_info(
        "logits", TensorProto.FLOAT, ["batch_size", "logit_rows" if attention == "edgevox" else 1, cfg.vocab])]

    skip_in = None  # output of the previous block, added to the residual by the next norm
    for i in range(cfg.n_layers):
        p = f"blk.{i}."

        norm_w = g.const(p + "attn_norm.weight", t[p + "attn_norm.weight"])
        if skip_in is None:
            x = g.op("SimplifiedLayerNormalization", [h, norm_w], axis=-1, epsilon=cfg.rms_eps)
        else:
            x, _, _, h = g.op("SkipSimplifiedLayerNormalization", [skip_in, h, norm_w], domain=MS,
                              out=[g.name("sln"), "", "", g.name("resid")], epsilon=cfg.rms_eps)

        if variant == "q4_1":
            q, k, v = g.fused_linear(x, [("q", g.raw_rows(p + "attn_q", cfg.n_heads)),
                                         ("k", g.raw_rows(p + "attn_k", KV)),
                                         ("v", g.raw_rows(p + "attn_v"))], p + "attn_qkv", H)
        else:
            q = g.linear(x, unpermute_qk(t[p + "attn_q.weight"], cfg.n_heads), p + "attn_q")
            k = g.linear(x, unpermute_qk(t[p + "attn_k.weight"], KV), p + "attn_k")
            v = g.linear(x, t[p + "attn_v.weight"], p + "attn_v")

        if attention == "edgevox":
            # RoPE, the in-place KV cache and grouped-query attention: edgevox's own op.
            ctx = g.op("EdgevoxAttention", [q, k, v], domain=EDGEVOX, layer=i, heads=cfg.n_heads,
                       kv_heads=KV, head_dim=D, rope_base=float(cfg.rope_base))
        else:
            ctx = onnx_attention(g, cfg, i, q, k, v, inputs, outputs)
        attn = g.linear(ctx, t[p + "attn_output.weight"], p + "attn_output")

        ffn_w = g.const(p + "ffn_norm.weight", t[p + "ffn_norm.weight"])
        x, _, _, h = g.op("SkipSimplifiedLayerNormalization", [attn, h, ffn_w], domain=MS,
                          out=[g.name("sln"), "", "", g.name("resid")], epsilon=cfg.rms_eps)
        if variant == "q4_1":
            gate, up = g.fused_linear(x, [("gate", g.raw_rows(p + "ffn_gate")),
                                          ("up", g.raw_rows(p + "ffn_up"))], p + "ffn_gate_up", H)
        else:
            gate = g.linear(x, t[p + "ffn_gate.weight"], p + "ffn_gate")
            up = g.linear(x, t[p + "ffn_up.weight"], p + "ffn_up")
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
        skip_in = g.linear(act, t[p + "ffn_down.weight"], p + "ffn_down")

    out_w = g.const("output_norm.weight", t["output_norm.weight"])
    x, _, _, _ = g.op("SkipSimplifiedLayerNormalization", [skip_in, h, out_w], domain=MS,
                      out=[g.name("sln"), "", "", ""], epsilon=cfg.rms_eps)
    if attention == "edgevox":
        last = g.op("EdgevoxLastRows", [x, "logit_rows"], domain=EDGEVOX)
    else:
        last = g.op("Slice", [x, i64(-1), i64(np.iinfo(np.int64).max), i64(1)])
    if variant == "q4_1":
        # The embedding's own blocks: one buffer serves the lookup and the LM head.
        e = g.weights.index["token_embd"]
        g.op("EdgevoxBlockLinear", [last], domain=EDGEVOX, out=["logits"], tensor="token_embd",
             type=e["type"], N=e["rows"], K=cfg.hidden, offset=e["offset"], bytes=e["bytes"])
    elif variant == "f32":
        g.op("MatMul", [last, g.op("Transpose", [table], perm=[1, 0])], out=["logits"])
    else:
        g.linear(last, emb, "lm_head", out=["logits"])

    graph = helper.make_graph(g.nodes, "edgevox-llama", inputs, outputs, initializer=g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(MS, 1), helper.make_opsetid(EDGEVOX, 1)],
        producer_name="edgevox-export-llm",
    )
    model.ir_version = 10
    return model, g.weights


# --------------------------------------------------------------------------------------------
# Tokenizer and chat template

# GGUF `tokenizer.ggml.pre` -> the `tokenizers` pre-tokenizer the original model used.
PRE_TOKENIZERS = {
    # SmolLM / SmolLM2: digits one by one, then GPT-2 byte-level splitting.
    "smollm": {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    },
    "gpt-2": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
}


def build_tokenizer(reader) -> dict:
    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ExportError(f"tokenizer.ggml.model is {model!r}; only byte-level BPE ('gpt2') is supported")
    pre = _field(reader, "tokenizer.ggml.pre", "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise ExportError(f"pre-tokenizer {pre!r} is not known to the exporter")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    types = list(_field(reader, "tokenizer.ggml.token_type"))
    merges = [m.split(" ", 1) for m in _field(reader, "tokenizer.ggml.merges")]
    added = [
        {"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, (tok, ty) in enumerate(zip(tokens, types)) if ty in (3, 4)  # CONTROL, USER_DEFINED
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre],
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }


def chat_template_pieces(reader) -> dict:
    """Renders the GGUF's Jinja chat template around sentinels to get each role's wrapping."""
    import jinja2

    source = _field(reader, "tokenizer.chat_template")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    template = env.from_string(source)
    sentinel = "\x00MSG\x00"

    def render(messages, gen):
        return template.render(messages=messages, add_generation_prompt=gen, bos_token="", eos_token="")

    pieces = {}
    for role in ("system", "user", "assistant"):
        msgs = [{"role": "system", "content": "S"}] if role != "system" else []
        base = render(msgs, False)
        full = render(msgs + [{"role": role, "content": sentinel}], False)
        if not full.startswith(base) or sentinel not in full:
            raise ExportError("chat template does not render messages one after the other")
        prefix, suffix = full[len(base):].split(sentinel)
        pieces[role] = {"prefix": prefix, "suffix": suffix}
    with_gen = render([{"role": "system", "content": "S"}], True)
    pieces["generation_prompt"] = with_gen[len(render([{"role": "system", "content": "S"}], False)):]
    default = render([{"role": "user", "content": sentinel}], False).split(sentinel)[0]
    sys_prefix = pieces["system"]["prefix"]
    if default.startswith(sys_prefix) and pieces["system"]["suffix"] in default:
        pieces["template_default_system_prompt"] = default[len(sys_prefix):].split(pieces["system"]["suffix"])[0]
    return pieces


# --------------------------------------------------------------------------------------------


def export(gguf_path: Path, out_dir: Path, variant: str = "q4_1", attention: str = "edgevox") -> dict:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(gguf_path)
    except Exception as e:  # the gguf package raises a variety of errors on bad files
        raise ExportError(f"{gguf_path}: not a readable GGUF file ({e})") from e
    cfg = read_config(reader)
    tensors = read_tensors(reader)
    check_tensors(cfg, tensors)
    raw = read_raw(reader) if variant == "q4_1" else None
    tok = _field(reader, "tokenizer.ggml.tokens")
    stop_names = ["<|im_end|>", "<|endoftext|>"]
    stop_ids = [int(tok.index(n)) for n in stop_names if n in tok]
    eos = int(_field(reader, "tokenizer.ggml.eos_token_id"))
    if eos not in stop_ids:
        stop_ids.append(eos)

    meta = {
        "source": {"file": gguf_path.name, "sha256": sha256_of(gguf_path)},
        "bos_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "stop_ids": stop_ids,
        "chat": chat_template_pieces(reader),
    }
    return write_export(out_dir, cfg, tensors, build_tokenizer(reader), meta, variant, raw, attention)


def write_export(out_dir: Path, cfg: LlamaConfig, tensors: dict[str, np.ndarray], tokenizer: dict,
                 meta: dict, variant: str, raw: dict[str, RawTensor] | None = None,
                 attention: str = "edgevox") -> dict:
    """Writes model.onnx, tokenizer.json, llm.json (meta gives source, bos_id, stop_ids, chat)
    and, for q4_1, weights.bin (`raw`: the GGUF's blocks by tensor name)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"export: building {variant} graph ({cfg.n_layers} layers)", flush=True)
    model, weights = build_model(cfg, tensors, variant, raw, attention)
    onnx_path = out_dir / "model.onnx"
    onnx.save(model, onnx_path)
    tok_path = out_dir / "tokenizer.json"
    tok_path.write_text(json.dumps(tokenizer, ensure_ascii=False))
    files = [onnx_path, tok_path]
    weights_path = out_dir / "weights.bin"
    if weights.index:
        weights.write(weights_path)
        files.append(weights_path)
    elif weights_path.exists():
        weights_path.unlink()

    meta = {
        "format": 1,
        "variant": variant,
        "attention": attention,
        "config": asdict(cfg),
        **meta,
        "files": {
            p.name: {"size": p.stat().st_size, "sha256": sha256_of(p)} for p in files
        },
    }
    if weights.index:
        meta["weights"] = weights.index
    (out_dir / "llm.json").write_text(json.dumps(meta, indent=2))
    print(f"export: wrote {onnx_path} ({meta['files']['model.onnx']['size']} bytes)", flush=True)
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--variant", choices=list(VARIANTS), default="q4_1")
    ap.add_argument("--attention", choices=list(ATTENTIONS), default="edgevox",
                    help="edgevox: edgevox's own op and in-place cache (what the runtime loads); "
                         "onnx: standard ops with the cache as graph inputs/outputs (for ONNX Runtime)")
    args = ap.parse_args(argv)
    try:
        export(args.gguf, args.out_dir, args.variant, args.attention)
    except ExportError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
