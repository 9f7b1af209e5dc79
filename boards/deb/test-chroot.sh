#!/bin/bash
# Installs a board's packages into a fresh copy of a Debian arm64 root file system
# (debootstrap; the arm64 programs run through qemu-user via binfmt_misc) and starts the
# service as systemd would: the unit's user, groups, environment and ExecStart line.
# Passes when the assistant has loaded its models, planned within the budget and is
# listening, and stops on SIGTERM. Called by `make test-deb BOARD=...`.
#
# Usage: test-chroot.sh ROOTFS DEB_DIR BOARD
set -euo pipefail

rootfs=$1 debs=$2 board=$3
limit=${EDGEVOX_START_LIMIT:-600}
r=$(mktemp -d /tmp/edgevox-chroot.XXXXXX)
cleanup() {
    [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null || true
    umount "$r/proc" 2>/dev/null || true
    rm -rf "$r"
}
trap cleanup EXIT
fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }

cp -a "$rootfs/." "$r/"
mount -t proc proc "$r/proc"
mkdir -p "$r/tmp/debs"
cp "$debs"/edgevox_*+"$board"_*.deb "$debs"/edgevox-models-"$board"_*_all.deb "$r/tmp/debs/"

echo "test-deb: installing into $r"
packages=()
for f in "$r"/tmp/debs/*.deb; do packages+=("/tmp/debs/${f##*/}"); done
chroot "$r" dpkg -i "${packages[@]}" || fail "dpkg -i"
chroot "$r" dpkg -s edgevox | grep -q '^Status: install ok installed' || fail "edgevox not installed"

# The postinst's service user, allowed to use the sound card.
chroot "$r" id edgevox | grep -q '(audio)' || fail "user edgevox is not in the audio group: $(chroot "$r" id edgevox)"
# The packaged profile, the unit, and a binary that runs and knows its board.
cmp -s "$r/etc/edgevox/board.toml" "boards/$board.toml" || fail "/etc/edgevox/board.toml"
unit=$r/lib/systemd/system/edgevox.service
grep -q '^User=edgevox$' "$unit" && grep -q '^SupplementaryGroups=audio$' "$unit" || fail "unit user/groups"
version=$(chroot "$r" /usr/bin/edgevox --version)
echo "test-deb: $version"
grep -q "board=$board" <<<"$version" || fail "binary built for another board: $version"
# Enabled for multi-user.target (deb-systemd-helper works without a running systemd).
[ -L "$r/etc/systemd/system/multi-user.target.wants/edgevox.service" ] || fail "service not enabled"
if command -v systemd-analyze >/dev/null; then
    # The unit's syntax and settings, checked by the host's systemd (ExecStart pointed at the
    # installed binary, since systemd-analyze checks that it is executable).
    mkdir -p "$r/tmp/unit"
    sed "s|/usr/bin/edgevox|$r/usr/bin/edgevox|" "$unit" > "$r/tmp/unit/edgevox.service"
    systemd-analyze verify "$r/tmp/unit/edgevox.service" || fail "systemd-analyze verify"
fi

# No sound card here: ALSA's null device stands in for microphone and speaker.
printf 'pcm.!default { type plug slave.pcm "null" }\nctl.!default { type hw card 0 }\n' > "$r/etc/asound.conf"

# The models package carries the wake word's networks with their fetch records; the service
# is started with one, as a user would turn it on in /etc/default/edgevox.
for f in wake/melspectrogram.onnx wake/embedding_model.onnx wake/hey_jarvis_v0.1.onnx stamps/openwakeword.json; do
    [ -s "$r/usr/share/edgevox/models/$f" ] || fail "the models package has no $f"
done
sed -i 's/^EDGEVOX_ARGS=""$/EDGEVOX_ARGS="--wake hey_jarvis"/' "$r/etc/default/edgevox"
grep -q '^EDGEVOX_ARGS="--wake hey_jarvis"$' "$r/etc/default/edgevox" || fail "/etc/default/edgevox has no EDGEVOX_ARGS line"

# Start it as systemd would: Environment= lines, the EnvironmentFile, then ExecStart.
env_args=()
while IFS= read -r line; do env_args+=("${line#Environment=}"); done < <(grep '^Environment=' "$unit")
set -a
# shellcheck disable=SC1091
. "$r/etc/default/edgevox"
set +a
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
exec_start=${exec_start//\$EDGEVOX_ARGS/$EDGEVOX_ARGS}
[ "$(chroot "$r" stat -c %U /var/lib/edgevox)" = edgevox ] || fail "/var/lib/edgevox is not the service user's"
echo "test-deb: starting as edgevox: $exec_start"
log=$r/tmp/edgevox.log
chroot --userspec=edgevox:edgevox --groups=audio "$r" \
    env -i PATH=/usr/bin:/bin "${env_args[@]}" sh -c "cd /var/lib/edgevox && exec $exec_start" \
    >"$log" 2>&1 &
pid=$!
start=$(date +%s)
until grep -q 'listening on' "$log"; do
    kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "edgevox exited before listening"; }
    [ $(($(date +%s) - start)) -lt "$limit" ] || { cat "$log"; fail "not listening after ${limit}s"; }
    sleep 2
done
echo "test-deb: listening after $(($(date +%s) - start)) s (under qemu):"
sed 's/^/  /' "$log"
grep -q "plan for $board: peak" "$log" || fail "no plan for $board in the log"
grep -q "wake word: hey_jarvis" "$log" || fail "the wake word did not load from the models package"
kill -TERM "$pid"
for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$pid" 2>/dev/null && fail "still running 10 s after SIGTERM"
pid=
echo "test-deb: $board packages install, the service user starts the assistant (wake word on), SIGTERM stops it"
