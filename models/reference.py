#!/usr/bin/env python3
"""Independent references for the exported LLM: ONNX Runtime on the same ONNX, and llama.cpp
(llama-cpp-python) on the GGUF itself.

    python3 models/reference.py ort MODEL_DIR OUT.json      # logits + greedy tokens via ORT
    python3 models/reference.py llamacpp GGUF TEXT OUT.json  # teacher-forced top-1 via llama.cpp

The JSON files are read by edgevox's Rust tests (tests/llm.rs), which run tract on the same
inputs and assert agreement, so every figure is checked by `make test`. The llama.cpp one is
committed (models/testdata/llamacpp_gettysburg.json, 5 KB, with the GGUF's sha256 and the
llama-cpp-python version that made it): building llama.cpp took 4 of a cold `make test`'s
34 minutes. `make refs-llamacpp` writes it again.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# The fixed prompt the fidelity check uses: the product's chat format and default prompt.
FIDELITY_SYSTEM = "You are a helpful voice assistant on smart glasses. Answer in one short, factual sentence."
FIDELITY_QUESTION = "What is the capital of France?"


def render_chat(meta: dict, system: str, user: str) -> str:
    c = meta["chat"]
    return (c["system"]["prefix"] + system + c["system"]["suffix"]
            + c["user"]["prefix"] + user + c["user"]["suffix"] + c["generation_prompt"])


def causal_bias(seq: int, past: int) -> np.ndarray:
    total = past + seq
    i = np.arange(seq)[:, None] + past
    j = np.arange(total)[None, :]
    return np.where(j <= i, 0.0, -np.inf).astype(np.float32)


class OrtLlm:
    """The exported decoder run by ONNX Runtime with an explicit KV cache."""

    def __init__(self, model_dir: Path, threads: int = 2):
        import onnxruntime as ort

        self.meta = json.loads((model_dir / "llm.json").read_text())
        cfg = self.meta["config"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
        self.n_layers, self.kv, self.d = cfg["n_layers"], cfg["n_kv_heads"], cfg["head_dim"]
        self.reset()

    def reset(self):
        empty = np.zeros((1, self.kv, 0, self.d), dtype=np.float32)
        self.cache = {}
        for i in range(self.n_layers):
            self.cache[f"past_key_values.{i}.key"] = empty
            self.cache[f"past_key_values.{i}.value"] = empty
        self.pos = 0

    def forward(self, tokens: list[int]) -> np.ndarray:
        s = len(tokens)
        feeds = {
            "input_ids": np.array([tokens], dtype=np.int64),
            "position_ids": np.arange(self.pos, self.pos + s, dtype=np.int64)[None, :],
            "attention_bias": causal_bias(s, self.pos),
            **self.cache,
        }
        names = [o.name for o in self.sess.get_outputs()]
        outs = dict(zip(names, self.sess.run(names, feeds)))
        for i in range(self.n_layers):
            self.cache[f"past_key_values.{i}.key"] = outs[f"present.{i}.key"]
            self.cache[f"past_key_values.{i}.value"] = outs[f"present.{i}.value"]
        self.pos += s
        return outs["logits"][0, -1]

    def greedy(self, prompt: list[int], n: int) -> tuple[np.ndarray, list[int]]:
        self.reset()
        logits = self.forward(prompt)
        first = logits.copy()
        out = []
        for _ in range(n):
            t = int(np.argmax(logits))
            out.append(t)
            logits = self.forward([t])
        return first, out


def tokenizer_for(model_dir: Path):
    """HF's own `tokenizers` reading the exported tokenizer.json (a check that it loads there too)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def cmd_ort(model_dir: Path, out: Path, n: int) -> None:
    llm = OrtLlm(model_dir)
    prompt_text = render_chat(llm.meta, FIDELITY_SYSTEM, FIDELITY_QUESTION)
    prompt = tokenizer_for(model_dir).encode(prompt_text, add_special_tokens=False).ids
    first, tokens = llm.greedy(prompt, n)
    out.write_text(json.dumps({
        "prompt": prompt_text, "prompt_ids": prompt, "first_logits": first.tolist(),
        "greedy": tokens,
    }))
    print(f"reference: ORT greedy {tokens[:12]}... -> {out}")


def cmd_llamacpp(gguf: Path, text_path: Path, out: Path, prompt: str) -> None:
    from llama_cpp import Llama

    text = text_path.read_text()
    llm = Llama(model_path=str(gguf), n_ctx=2048, logits_all=True, verbose=False, n_threads=2)
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    llm.reset()
    llm.eval(ids)
    scores = np.asarray(llm.scores[: len(ids)])
    top1 = scores.argmax(axis=-1).tolist()
    prompt_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    import hashlib
    from importlib.metadata import version

    h = hashlib.sha256()
    with open(gguf, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    out.write_text(json.dumps({
        # What made it: the test refuses a reference of another GGUF.
        "source": {"llama_cpp_python": version("llama-cpp-python"), "gguf": gguf.name,
                   "gguf_sha256": h.hexdigest()},
        "text": text, "ids": ids, "top1": top1, "chat_prompt": prompt, "chat_prompt_ids": prompt_ids,
    }, indent=1) + "\n")
    print(f"reference: llama.cpp teacher-forced top-1 over {len(ids)} tokens -> {out}")


def cmd_vad(model: Path, wav_path: Path, out: Path) -> None:
    """Runs Silero the way its own wrapper does: 64 samples of context + 512 new ones, state
    carried, sr = 16000. The Rust side must reproduce these probabilities."""
    import wave

    import onnxruntime as ort

    with wave.open(str(wav_path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, wav_path
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(64, np.float32)
    sr = np.array(16000, dtype=np.int64)
    probs = []
    for start in range(0, len(pcm) - 511, 512):
        window = pcm[start : start + 512]
        x = np.concatenate([context, window])[None, :]
        p, state = sess.run(None, {"input": x, "state": state, "sr": sr})
        probs.append(float(p[0, 0]))
        context = window[-64:]
    out.write_text(json.dumps({"wav": wav_path.name, "window": 512, "probs": probs}))
    print(f"reference: {len(probs)} Silero windows -> {out}")


def cmd_wake(wake_dir: Path, text: str, out: Path, heads: list[str]) -> None:
    """openWakeWord's front end and heads by onnxruntime, stepped the way edgevox steps them:
    espeak-ng speaks `text`, numpy resamples it to a 16 kHz 16-bit WAV written beside `out` (the
    Rust side reads that file, so both see the same samples); the stream starts with 480 samples
    of context and 2 s of silence, then 80 ms steps: mel over the last 1760 samples (x/10 + 2),
    the embedding of the last 76 frames, each head over the last 16 embeddings."""
    import subprocess
    import tempfile
    import wave

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        with wave.open(str(raw)) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    t = np.arange(int(len(x) * 16000 / rate)) / 16000.0
    pcm = np.round(np.interp(t, np.arange(len(x)) / rate, x)).astype("<i2")
    pcm = np.concatenate([pcm, np.zeros(8000, "<i2")])
    wav_path = out.with_suffix(".wav")
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())

    def session(name: str):
        return ort.InferenceSession(str(wake_dir / name), providers=["CPUExecutionProvider"])

    mel, emb = session("melspectrogram.onnx"), session("embedding_model.onnx")
    nets = [session(f"{h}_v0.1.onnx") for h in heads]
    signal = pcm.astype(np.float32) / 32768.0 * 32768.0
    stream = np.concatenate([np.zeros(480 + 32000, np.float32), signal])
    mels = np.zeros((76, 32), np.float32)
    feats = np.zeros((16, 96), np.float32)
    scores = []
    for i, end in enumerate(range(1760, len(stream) + 1, 1280)):
        m = mel.run(None, {"input": stream[None, end - 1760 : end]})[0].reshape(8, 32) / 10.0 + 2.0
        mels = np.concatenate([mels[8:], m]).astype(np.float32)
        e = emb.run(None, {"input_1": mels[None, :, :, None]})[0].reshape(96)
        feats = np.concatenate([feats[1:], e[None]]).astype(np.float32)
        if i >= 25:  # the 2 s of priming silence are 25 steps
            scores.append([float(n.run(None, {n.get_inputs()[0].name: feats[None]})[0][0, 0]) for n in nets])
    out.write_text(json.dumps({"wav": wav_path.name, "text": text, "heads": heads, "scores": scores}))
    print(f"reference: {len(scores)} wake-word steps, best {[max(c) for c in zip(*scores)]} -> {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ort")
    a.add_argument("model_dir", type=Path)
    a.add_argument("out", type=Path)
    a.add_argument("--tokens", type=int, default=32)
    b = sub.add_parser("llamacpp")
    b.add_argument("gguf", type=Path)
    b.add_argument("text", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--model-dir", type=Path, required=True, help="exported dir, for the chat template")
    c = sub.add_parser("vad", help="Silero VAD probabilities per 512-sample window, by onnxruntime")
    c.add_argument("model", type=Path)
    c.add_argument("wav", type=Path, help="16 kHz mono 16-bit WAV")
    c.add_argument("out", type=Path)
    d = sub.add_parser("wake", help="openWakeWord scores per 80 ms step on a spoken phrase, by onnxruntime")
    d.add_argument("wake_dir", type=Path)
    d.add_argument("text")
    d.add_argument("out", type=Path)
    d.add_argument("--heads", nargs="+", default=["hey_jarvis", "alexa"])
    args = ap.parse_args(argv)
    if args.cmd == "wake":
        cmd_wake(args.wake_dir, args.text, args.out, args.heads)
    elif args.cmd == "vad":
        cmd_vad(args.model, args.wav, args.out)
    elif args.cmd == "ort":
        cmd_ort(args.model_dir, args.out, args.tokens)
    else:
        meta = json.loads((args.model_dir / "llm.json").read_text())
        cmd_llamacpp(args.gguf, args.text, args.out, render_chat(meta, FIDELITY_SYSTEM, FIDELITY_QUESTION))
    return 0


if __name__ == "__main__":
    sys.exit(main())
