#!/usr/bin/env python3
"""faster-whisper (CTranslate2) on the same Whisper base and the same clips, for comparison.

    python3 models/bench_fasterwhisper.py CT2_DIR CLIP.wav [CLIP.wav ...] [--runs 3]

Joins the split model.bin into a temporary directory, then transcribes each clip whole
(greedy, no VAD, English, int8 and float32 compute) at 1 and 2 threads and prints JSON with
the median wall time and real-time factor, like `edgevox bench asr --whole`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np


def load_16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate, ch = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    pcm = pcm.reshape(-1, ch).mean(axis=1)
    if rate != 16000:  # plain linear interpolation; the clips are 16 or 48 kHz speech
        t = np.arange(0, len(pcm) / rate, 1 / 16000)
        pcm = np.interp(t, np.arange(len(pcm)) / rate, pcm).astype(np.float32)
    return pcm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ct2_dir", type=Path)
    ap.add_argument("clips", type=Path, nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    from faster_whisper import WhisperModel

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevox-fw-") as tmp:
        d = Path(tmp)
        with open(d / "model.bin", "wb") as out:
            for part in sorted(args.ct2_dir.glob("model.bin.part*")):
                out.write(part.read_bytes())
        for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
            (d / name).write_bytes((args.ct2_dir / name).read_bytes())
        for compute in ("int8", "float32"):
            for threads in (1, 2):
                model = WhisperModel(str(d), device="cpu", compute_type=compute, cpu_threads=threads)
                for clip in args.clips:
                    audio = load_16k(clip)
                    times, text = [], ""
                    for _ in range(args.runs):
                        t = time.perf_counter()
                        segments, _ = model.transcribe(
                            audio, language="en", beam_size=1, best_of=1, vad_filter=False,
                            condition_on_previous_text=False, without_timestamps=True)
                        text = " ".join(s.text.strip() for s in segments)
                        times.append(time.perf_counter() - t)
                    secs = len(audio) / 16000
                    med = statistics.median(times)
                    rows.append({"clip": clip.name, "compute": compute, "threads": threads,
                                 "audio_s": secs, "asr_ms": med * 1e3, "rtf": med / secs, "text": text})
                    print(f"faster-whisper {compute} {threads} thr {clip.name}: {med:.2f} s", file=sys.stderr)
                del model
    import faster_whisper
    print(json.dumps({"bench": "asr", "runtime": f"faster-whisper {faster_whisper.__version__}",
                      "runs": args.runs, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
