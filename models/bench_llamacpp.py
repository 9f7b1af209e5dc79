#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on the same GGUF, measured like `edgevox bench llm`: medians
of prefill and one-token-per-step decode speed, per thread count. Prints JSON.

    python3 models/bench_llamacpp.py GGUF [--threads 1,2] [--runs 5] [--decode-tokens 64]
"""
import argparse
import json
import statistics
import time

from reference import FIDELITY_QUESTION, FIDELITY_SYSTEM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--decode-tokens", type=int, default=64)
    args = ap.parse_args()
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
            tok = int(llm.scores[llm.n_tokens - 1].argmax())
            t = time.perf_counter()
            for _ in range(args.decode_tokens):
                llm.eval([tok])
                tok = int(llm.scores[llm.n_tokens - 1].argmax())
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
