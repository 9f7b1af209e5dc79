#!/usr/bin/env python3
"""Speak the [[synthetic]] sentences of testdata/speech.toml with espeak-ng.

    python3 models/speech_clips.py OUT_DIR

Writes OUT_DIR/NAME.wav (espeak-ng's own 22.05 kHz mono 16-bit, so the tests also exercise
resampling) and OUT_DIR/clips.json with each clip's text. The voice is British RP, a little
slower than espeak's default and with a short gap between words: of the settings tried, the
one Whisper base understands best (the default en-us voice at 160 words/min loses about a
third of the words).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
VOICE = ["-v", "en-gb-x-rp", "-s", "140", "-g", "3"]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("speech_clips: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    spec = tomllib.loads((HERE / "testdata" / "speech.toml").read_text())
    clips = {}
    for clip in spec["synthetic"]:
        path = out / f"{clip['name']}.wav"
        tmp = path.with_suffix(".part.wav")
        subprocess.run([espeak, *VOICE, "-w", str(tmp), clip["text"]], check=True)
        tmp.replace(path)
        clips[clip["name"]] = {"file": path.name, "text": clip["text"]}
    (out / "clips.json").write_text(json.dumps(clips, indent=2))
    print(f"speech_clips: {len(clips)} clips in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
