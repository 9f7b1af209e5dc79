#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on the same GGUF, measured like `edgevox bench llm`: medians
of prefill and one-token-per-step decode speed, per thread count. Prints JSON.

    python3 models/bench_llamacpp.py GGUF [--threads 1,2] [--runs 5] [--decode-tokens 64]
    python3 models/bench_llamacpp.py GGUF --facts models/testdata/facts.toml > replies.json

`--facts`: llama.cpp's greedy replies to the fidelity questions (same system prompt and
token limit as `edgevox bench facts`), a JSON list that `edgevox bench facts --replies` scores.
"""
import argparse
import json
import statistics
import time

from reference import FIDELITY_QUESTION, FIDELITY_SYSTEM


def last_logits(llm):
    """The logits of the last evaluated token. llama-cpp-python 0.3.36 fills `scores` only with
    logits_all=True (which copies every prompt position's logits); this reads llama.cpp's own
    buffer instead, as its sampler does."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def facts_replies(gguf: str, path: str) -> list[str]:
    import tomllib

    from llama_cpp import Llama

    facts = tomllib.loads(open(path).read())
    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=1, verbose=False)
    end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]
    stops = {end, llm.token_eos()}
    replies = []
    for f in facts["question"]:
        prompt = (f"<|im_start|>system\n{facts['system']}<|im_end|>\n<|im_start|>user\n"
                  f"{f['q']}<|im_end|>\n<|im_start|>assistant\n")
        llm.reset()
        llm.eval(llm.tokenize(prompt.encode(), add_bos=False, special=True))
        out = []
        for _ in range(facts["max_tokens"]):
            tok = int(last_logits(llm).argmax())
            if tok in stops:
                break
            out.append(tok)
            llm.eval([tok])
        replies.append(llm.detokenize(out).decode("utf-8", errors="replace").strip())
    return replies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--facts", help="print llama.cpp's replies to this facts file instead")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--decode-tokens", type=int, default=64)
    args = ap.parse_args()
    if args.facts:
        print(json.dumps(facts_replies(args.gguf, args.facts), indent=1))
        return
    from llama_cpp import Llama

    prompt = (f"<|im_start|>system\n{FIDELITY_SYSTEM}<|im_end|>\n<|im_start|>user\n"
              f"{FIDELITY_QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    out = {"bench": "llm", "runtime": "llama.cpp (llama-cpp-python)", "by_threads": []}
    for n in [int(t) for t in args.threads.split(",")]:
        t0 = time.perf_counter()
        llm = Llama(model_path=args.gguf, n_ctx=2048, n_threads=n, n_threads_batch=n, verbose=False)
        load = time.perf_counter() - t0
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        prefill, decode = [], []
        for _ in range(args.runs):
            llm.reset()
            t = time.perf_counter()
            llm.eval(ids)
            prefill.append(len(ids) / (time.perf_counter() - t))
            tok = int(last_logits(llm).argmax())
            t = time.perf_counter()
            for _ in range(args.decode_tokens):
                llm.eval([tok])
                tok = int(last_logits(llm).argmax())
            decode.append(args.decode_tokens / (time.perf_counter() - t))
        out["by_threads"].append({
            "threads": n, "load_ms": load * 1e3, "prompt_tokens": len(ids),
            "prefill_tokens_per_s": statistics.median(prefill),
            "decode_tokens_per_s": statistics.median(decode),
        })
        del llm
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
