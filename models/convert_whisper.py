#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model into whisper.cpp's ggml files.

    python3 models/convert_whisper.py CT2_DIR MEL_FILTERS.npz OUT_DIR [--types f16 q8_0 q5_1]

CT2_DIR holds `config.json`, `vocabulary.txt` and `model.bin` (or `model.bin.part1`,
`model.bin.part2`, ... which are joined in order). Writes `OUT_DIR/ggml-base-<type>.bin` for
each type and `OUT_DIR/whisper.json`, which records the hyper-parameters and the size and
sha256 of every file so that the runtime can check them before loading.

The ggml file is what whisper.cpp's loader reads (whisper.cpp 1.8.x, `whisper_model_load`):
magic, eleven int32 hyper-parameters, the mel filterbank, the byte-level vocabulary without
its special tokens (whisper.cpp adds those itself), then every tensor as
(n_dims, name length, ggml type, dims fastest-first, name, data). Matrices are f16 or
block-quantized (q8_0, q5_1); biases, norms and positional embeddings stay f32; the conv
kernels stay f16 in every variant, as whisper.cpp expects.

CTranslate2 fuses some projections: self-attention's Q, K and V are one matrix, and
cross-attention's K and V are one matrix. They are split back here; Whisper's key projection
has no bias, so the fused bias's K third must be zero (checked).
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, quants

from fetch import sha256_of

GGML_MAGIC = 0x67676D6C
GGML_QNT_VERSION = 2
GGML_QNT_VERSION_FACTOR = 1000

# name -> (ggml tensor type for matrices, file-level ftype)
TYPES = {
    "f32": (0, 0),
    "f16": (1, 1),
    "q5_1": (int(GGMLQuantizationType.Q5_1), 9),
    "q8_0": (int(GGMLQuantizationType.Q8_0), 7),
}

# CTranslate2's variable dtypes (ctranslate2::DataType)
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class ConvertError(RuntimeError):
    pass


# --- reading CTranslate2 --------------------------------------------------------------------


def read_model_bin(ct2_dir: Path) -> bytes:
    single = ct2_dir / "model.bin"
    if single.exists():
        return single.read_bytes()
    parts = sorted(ct2_dir.glob("model.bin.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        raise ConvertError(f"{ct2_dir}: no model.bin nor model.bin.part1, part2, ...")
    return b"".join(p.read_bytes() for p in parts)


class _Reader:
    def __init__(self, data: bytes, origin: str):
        self.data, self.pos, self.origin = data, 0, origin

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ConvertError(
                f"{self.origin}: unexpected end of file at byte {self.pos} (wanted {n} more); "
                "the model is truncated"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        raw = self.take(n)
        if not raw.endswith(b"\0"):
            raise ConvertError(f"{self.origin}: malformed string at byte {self.pos - n}")
        return raw[:-1].decode("utf-8", errors="replace")


def parse_ct2(data: bytes, origin: str) -> tuple[str, dict[str, np.ndarray]]:
    """Variables of a CTranslate2 model.bin (binary versions 5 and 6), aliases resolved."""
    r = _Reader(data, origin)
    (version,) = r.unpack("I")
    if version not in (5, 6):
        raise ConvertError(f"{origin}: CTranslate2 binary version {version} is not supported (5 or 6)")
    spec = r.string()
    r.unpack("I")  # spec revision
    (count,) = r.unpack("I")
    if count > 100_000:
        raise ConvertError(f"{origin}: implausible variable count {count}; not a CTranslate2 model")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = r.string()
        (rank,) = r.unpack("B")
        dims = r.unpack("I" * rank) if rank else ()
        (dtype_id,) = r.unpack("B")
        (nbytes,) = r.unpack("I")
        if dtype_id not in CT2_DTYPES:
            raise ConvertError(f"{origin}: variable {name} has unknown dtype id {dtype_id}")
        dtype = np.dtype(CT2_DTYPES[dtype_id])
        want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if nbytes != want:
            raise ConvertError(f"{origin}: variable {name} {dims} holds {nbytes} bytes, expected {want}")
        variables[name] = np.frombuffer(r.take(nbytes), dtype=dtype).reshape(dims)
    if r.pos < len(data):
        (n_alias,) = r.unpack("I")
        for _ in range(n_alias):
            alias, target = r.string(), r.string()
            if target not in variables:
                raise ConvertError(f"{origin}: alias {alias} points at missing {target}")
            variables[alias] = variables[target]
    if r.pos != len(data):
        raise ConvertError(f"{origin}: {len(data) - r.pos} trailing bytes after the model")
    return spec, variables


# --- vocabulary -----------------------------------------------------------------------------


def byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-printable-character table, used by Whisper's tokenizer."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def read_vocabulary(path: Path) -> list[bytes]:
    """Byte strings of the ordinary tokens: every line before `<|endoftext|>`."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if "<|endoftext|>" not in lines:
        raise ConvertError(f"{path}: no <|endoftext|> token; not a Whisper vocabulary")
    ordinary = lines[: lines.index("<|endoftext|>")]
    table = byte_decoder()
    out = []
    for i, tok in enumerate(ordinary):
        try:
            out.append(bytes(table[ch] for ch in tok))
        except KeyError as e:
            raise ConvertError(f"{path}: token {i} has a character {e} outside the byte table") from None
    return out


# --- mapping CTranslate2 names to whisper.cpp names -------------------------------------------


def _split(w: np.ndarray, parts: int) -> list[np.ndarray]:
    if w.shape[0] % parts:
        raise ConvertError(f"cannot split a fused projection of {w.shape[0]} rows in {parts}")
    return np.split(w, parts, axis=0)


def _linear(out: list, v: dict, src: str, dst: str) -> None:
    out.append((f"{dst}.weight", v[f"{src}/weight"]))
    out.append((f"{dst}.bias", v[f"{src}/bias"]))


def _norm(out: list, v: dict, src: str, dst: str) -> None:
    out.append((f"{dst}.weight", v[f"{src}/gamma"]))
    out.append((f"{dst}.bias", v[f"{src}/beta"]))


def _check_no_key_bias(bias: np.ndarray, src: str, origin: str) -> None:
    if np.abs(bias.astype(np.float32)).max() > 0:
        raise ConvertError(f"{origin}: {src} has a non-zero key bias, which whisper.cpp cannot hold")


def _qkv(out: list, v: dict, src: str, dst: str, origin: str) -> None:
    wq, wk, wv = _split(v[f"{src}/weight"], 3)
    bq, bk, bv = _split(v[f"{src}/bias"], 3)
    _check_no_key_bias(bk, src, origin)
    out += [
        (f"{dst}.query.weight", wq), (f"{dst}.query.bias", bq),
        (f"{dst}.key.weight", wk),
        (f"{dst}.value.weight", wv), (f"{dst}.value.bias", bv),
    ]


def _self_attention(out: list, v: dict, s: str, d: str, origin: str) -> None:
    _norm(out, v, f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
    _qkv(out, v, f"{s}/self_attention/linear_0", f"{d}.attn", origin)
    _linear(out, v, f"{s}/self_attention/linear_1", f"{d}.attn.out")


def _ffn(out: list, v: dict, s: str, d: str) -> None:
    _norm(out, v, f"{s}/ffn/layer_norm", f"{d}.mlp_ln")
    _linear(out, v, f"{s}/ffn/linear_0", f"{d}.mlp.0")
    _linear(out, v, f"{s}/ffn/linear_1", f"{d}.mlp.2")


def count_layers(v: dict, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def whisper_tensors(v: dict, origin: str) -> list[tuple[str, np.ndarray]]:
    """whisper.cpp's tensors, in its names, from CTranslate2's WhisperSpec variables."""
    try:
        t: list[tuple[str, np.ndarray]] = [
            ("encoder.positional_embedding", v["encoder/position_encodings/encodings"]),
            ("encoder.conv1.weight", v["encoder/conv1/weight"]),
            ("encoder.conv1.bias", v["encoder/conv1/bias"].reshape(-1, 1)),
            ("encoder.conv2.weight", v["encoder/conv2/weight"]),
            ("encoder.conv2.bias", v["encoder/conv2/bias"].reshape(-1, 1)),
        ]
        for i in range(count_layers(v, "encoder")):
            s, d = f"encoder/layer_{i}", f"encoder.blocks.{i}"
            _self_attention(t, v, s, d, origin)
            _ffn(t, v, s, d)
        _norm(t, v, "encoder/layer_norm", "encoder.ln_post")

        t += [
            ("decoder.positional_embedding", v["decoder/position_encodings/encodings"]),
            ("decoder.token_embedding.weight", v["decoder/embeddings/weight"]),
        ]
        for i in range(count_layers(v, "decoder")):
            s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
            _self_attention(t, v, s, d, origin)
            _norm(t, v, f"{s}/attention/layer_norm", f"{d}.cross_attn_ln")
            _linear(t, v, f"{s}/attention/linear_0", f"{d}.cross_attn.query")
            wk, wv = _split(v[f"{s}/attention/linear_1/weight"], 2)
            bk, bv = _split(v[f"{s}/attention/linear_1/bias"], 2)
            _check_no_key_bias(bk, f"{s}/attention/linear_1", origin)
            t += [
                (f"{d}.cross_attn.key.weight", wk),
                (f"{d}.cross_attn.value.weight", wv), (f"{d}.cross_attn.value.bias", bv),
            ]
            _linear(t, v, f"{s}/attention/linear_2", f"{d}.cross_attn.out")
            _ffn(t, v, s, d)
        _norm(t, v, "decoder/layer_norm", "decoder.ln")
    except KeyError as e:
        raise ConvertError(f"{origin}: variable {e} is missing; not a Whisper model") from None
    return t


def hparams_of(v: dict, n_mels_filters: int) -> dict:
    emb = v["decoder/embeddings/weight"]
    conv1 = v["encoder/conv1/weight"]
    hp = {
        "n_vocab": emb.shape[0],
        "n_audio_ctx": v["encoder/position_encodings/encodings"].shape[0],
        "n_audio_state": conv1.shape[0],
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": count_layers(v, "encoder"),
        "n_text_ctx": v["decoder/position_encodings/encodings"].shape[0],
        "n_text_state": emb.shape[1],
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": count_layers(v, "decoder"),
        "n_mels": conv1.shape[1],
    }
    if hp["n_mels"] != n_mels_filters:
        raise ConvertError(f"the model takes {hp['n_mels']} mel bins but the filterbank has {n_mels_filters}")
    return {k: int(x) for k, x in hp.items()}


# --- writing ggml -----------------------------------------------------------------------------


def tensor_type(name: str, arr: np.ndarray, matrix_type: int) -> int:
    """whisper.cpp's expected type for each tensor, given the file's matrix type."""
    if name in ("encoder.conv1.weight", "encoder.conv2.weight"):
        return 0 if matrix_type == 0 else 1  # conv kernels: f16 unless the whole file is f32
    if arr.ndim < 2 or name.endswith(".bias") or "positional_embedding" in name:
        return 0
    return matrix_type


def encode_tensor(arr: np.ndarray, ggml_type: int) -> bytes:
    if ggml_type == 0:
        return np.ascontiguousarray(arr, dtype=np.float32).tobytes()
    if ggml_type == 1:
        return np.ascontiguousarray(arr, dtype=np.float16).tobytes()
    q = quants.quantize(np.ascontiguousarray(arr, dtype=np.float32), GGMLQuantizationType(ggml_type))
    return q.tobytes()


def write_ggml(path: Path, hp: dict, filters: np.ndarray, vocab: list[bytes], tensors, kind: str) -> None:
    matrix_type, ftype = TYPES[kind]
    if matrix_type not in (0, 1):
        ftype += GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<I", GGML_MAGIC))
        for key in ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                    "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels"):
            f.write(struct.pack("<i", hp[key]))
        f.write(struct.pack("<i", ftype))
        f.write(struct.pack("<ii", *filters.shape))
        f.write(np.ascontiguousarray(filters, dtype=np.float32).tobytes())
        f.write(struct.pack("<i", len(vocab)))
        for tok in vocab:
            f.write(struct.pack("<I", len(tok)))
            f.write(tok)
        for name, arr in tensors:
            gtype = tensor_type(name, arr, matrix_type)
            raw = name.encode()
            f.write(struct.pack("<iii", arr.ndim, len(raw), gtype))
            f.write(struct.pack(f"<{arr.ndim}i", *reversed(arr.shape)))
            f.write(raw)
            f.write(encode_tensor(arr, gtype))
    tmp.replace(path)


def convert(ct2_dir: Path, mel_npz: Path, out_dir: Path, kinds: list[str]) -> dict:
    origin = str(ct2_dir / "model.bin")
    spec, variables = parse_ct2(read_model_bin(ct2_dir), origin)
    if spec != "WhisperSpec":
        raise ConvertError(f"{origin}: a {spec} model, not a WhisperSpec")
    try:
        with np.load(mel_npz) as npz:
            filters = None
            for key in npz.files:
                cand = npz[key]
                if cand.ndim == 2 and cand.shape[0] == variables["encoder/conv1/weight"].shape[1]:
                    filters = cand.astype(np.float32)
    except (OSError, ValueError) as e:
        raise ConvertError(f"{mel_npz}: cannot read the mel filters: {e}") from None
    if filters is None:
        raise ConvertError(f"{mel_npz}: no filterbank with the model's number of mel bins")
    hp = hparams_of(variables, filters.shape[0])
    vocab = read_vocabulary(ct2_dir / "vocabulary.txt")
    tensors = whisper_tensors(variables, origin)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"format": "whisper.cpp ggml", "source": "CTranslate2 " + spec, "hparams": hp,
              "n_ordinary_tokens": len(vocab), "files": {}}
    for kind in kinds:
        path = out_dir / f"ggml-base-{kind}.bin"
        print(f"convert: writing {path.name} ({len(tensors)} tensors)", flush=True)
        write_ggml(path, hp, filters, vocab, tensors, kind)
        record["files"][kind] = {"file": path.name, "size": path.stat().st_size, "sha256": sha256_of(path)}
        print(f"convert: wrote {path} ({record['files'][kind]['size']} bytes)", flush=True)
    (out_dir / "whisper.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ct2_dir", type=Path)
    ap.add_argument("mel_filters", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--types", nargs="+", default=["f16", "q8_0", "q5_1"], choices=sorted(TYPES))
    args = ap.parse_args(argv)
    try:
        convert(args.ct2_dir, args.mel_filters, args.out_dir, args.types)
    except ConvertError as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
