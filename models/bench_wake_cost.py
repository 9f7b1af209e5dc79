#!/usr/bin/env python3
"""What the wake word costs the whole assistant, from one `make bench-e2e` run: the same
questions replayed without a wake word and after one (each run its own process, so each peak
RSS is its own).

    python3 models/bench_wake_cost.py OFF_JSON ON_JSON
"""
import json
import sys


def main(argv):
    off, on = (json.load(open(p)) for p in argv[1:3])
    mo, mn = off["median_ms_after_end_of_speech"], on["median_ms_after_end_of_speech"]
    rss = (on["peak_rss_bytes"] - off["peak_rss_bytes"]) / 2**20
    first = None if mn["first_audio"] is None or mo["first_audio"] is None else mn["first_audio"] - mo["first_audio"]
    out = {
        "wake": on["wake"],
        "answered": {"off": off["answered"], "on": on["answered"], "questions": on["questions"]},
        "first_audio_ms": {"off": mo["first_audio"], "on": mn["first_audio"], "delta": first},
        "peak_rss_mib": {"off": off["peak_rss_bytes"] / 2**20, "on": on["peak_rss_bytes"] / 2**20, "delta": rss},
    }
    print(json.dumps(out, indent=2))
    first_s = "n/a" if first is None else f"{first:+.0f} ms"
    print(f"wake word {on['wake']}: answered {on['answered']}/{on['questions']} "
          f"(without: {off['answered']}/{off['questions']}), first audio {first_s}, "
          f"peak RSS {rss:+.1f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
