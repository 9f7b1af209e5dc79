"""The tiny synthetic Llama the Rust unit tests use: its numpy reference must agree with ONNX
Runtime running the exported graph, so a Rust failure points at tract, not at the reference."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tiny_llm  # noqa: E402
from reference import OrtLlm  # noqa: E402


def test_reference_agrees_with_onnx_runtime(tmp_path):
    """ONNX Runtime runs the same model written in standard ops (`--attention onnx`, f32
    cache) and must give the reference's f32-cache logits; the f16 ones differ by the
    cache's rounding only."""
    ref = tiny_llm.build(tmp_path, attention="onnx")
    meta = json.loads((tmp_path / "llm.json").read_text())
    assert meta["config"]["vocab"] == 259 and meta["stop_ids"] == [257, 258]
    assert (tmp_path / "model.onnx").stat().st_size < 200_000
    llm = OrtLlm(tmp_path, threads=1)
    first, greedy = llm.greedy(ref["prompt_ids"], len(ref["greedy"]))
    assert np.max(np.abs(first - np.array(ref["step_logits_f32"][0]))) < 1e-4
    rounding = np.max(np.abs(np.array(ref["step_logits"][0]) - np.array(ref["step_logits_f32"][0])))
    assert 0 < rounding < 5e-2
    assert greedy == ref["greedy"]
    # Not a degenerate model: the continuation is not one token repeated.
    assert len(set(greedy)) > 3


def test_byte_tokenizer_ids():
    assert tiny_llm.encode("<|im_start|>hé<|im_end|>") == [256, ord("h"), 0xC3, 0xA9, 257]
    tok, vocab = tiny_llm.byte_tokenizer()
    assert len(tok["model"]["vocab"]) == 259 and sorted(vocab.values()) == list(range(256))


def test_q4_1_twin_has_gguf_blocks_and_a_varied_reference(tmp_path):
    """The q4_1 tiny model: weights.bin with Q4_1 projections and a Q8_0 embedding, and a
    reference whose greedy run is not one token repeated (it would test little)."""
    ref = tiny_llm.build(tmp_path, seed=10, variant="q4_1")
    meta = json.loads((tmp_path / "llm.json").read_text())
    kinds = {e["type"] for e in meta["weights"].values()}
    assert kinds == {"q4_1", "q8_0"} and meta["weights"]["token_embd"]["type"] == "q8_0"
    assert (tmp_path / "weights.bin").stat().st_size == meta["files"]["weights.bin"]["size"]
    assert len(set(ref["greedy"])) > 3
    # The 8-bit activation rounding is llama.cpp's reference one: halves away from zero.
    x = np.array([0.5, -0.5, 127.0, -1.5] + [0.0] * 28)  # d = 1
    assert np.array_equal(tiny_llm.act_q8(x)[:4], [1, -1, 127, -2])
