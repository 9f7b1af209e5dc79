#!/usr/bin/env python3
"""edgevox / llama.cpp ratios from one `make bench-compare` run (medians from both benches).

    python3 models/bench_ratios.py EDGEVOX_JSON LLAMACPP_JSON
"""
import json
import sys


def main(argv):
    ours, theirs = (json.load(open(p)) for p in argv[1:3])
    by_threads = {t["threads"]: t for t in theirs["by_threads"]}
    rows = []
    for e in ours["by_threads"]:
        ref = by_threads.get(e["threads"])
        if ref is None:
            continue
        rows.append({
            "threads": e["threads"],
            "decode_ratio": e["decode_tokens_per_s"] / ref["decode_tokens_per_s"],
            "prefill_ratio": e["prefill_tokens_per_s"] / ref["prefill_tokens_per_s"],
            "edgevox_decode_tokens_per_s": e["decode_tokens_per_s"],
            "llamacpp_decode_tokens_per_s": ref["decode_tokens_per_s"],
            "edgevox_ttft_ms_with_prefix_cache": e["ttft_ms_with_prefix_cache"],
            "edgevox_ttft_ms_without_prefix_cache": e["ttft_ms_without_prefix_cache"],
            "decode_step_share": e.get("decode_step_share"),
        })
        print(f"{e['threads']} thread(s): decode {rows[-1]['decode_ratio']:.2f}x llama.cpp "
              f"({e['decode_tokens_per_s']:.1f} vs {ref['decode_tokens_per_s']:.1f} tokens/s), "
              f"prefill {rows[-1]['prefill_ratio']:.2f}x, first token {e['ttft_ms_with_prefix_cache']:.0f} ms "
              f"with the prefix cache", file=sys.stderr)
    print(json.dumps({"bench": "compare", "by_threads": rows, "memory": ours.get("memory")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
