"""The CTranslate2 -> whisper.cpp converter on a tiny synthetic Whisper, read back by an
independent reader of the ggml layout, and on bad input. The real model is exercised by the
Rust tests (tests/hear.rs), where whisper.cpp loads every converted variant and transcribes."""
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import convert_whisper as cw  # noqa: E402
import fetch  # noqa: E402

STATE, HEADS, MELS, VOCAB_ORDINARY, N_SPECIAL = 64, 2, 8, 40, 5


def ct2_bytes(variables: dict, aliases: dict, spec: str = "WhisperSpec") -> bytes:
    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    for name, arr in variables.items():
        arr = np.asarray(arr)
        out += string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<B", ids[arr.dtype]) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases))
    for a, t in aliases.items():
        out += string(a) + string(t)
    return out


def tiny_whisper(rng) -> dict:
    h = lambda *shape: rng.standard_normal(shape).astype(np.float16)  # noqa: E731
    v = {
        "encoder/num_heads": np.array(HEADS, np.int16),
        "decoder/num_heads": np.array(HEADS, np.int16),
        "encoder/conv1/weight": h(STATE, MELS, 3), "encoder/conv1/bias": h(STATE),
        "encoder/conv2/weight": h(STATE, STATE, 3), "encoder/conv2/bias": h(STATE),
        "encoder/position_encodings/encodings": h(30, STATE),
        "encoder/layer_norm/gamma": h(STATE), "encoder/layer_norm/beta": h(STATE),
        "decoder/embeddings/weight": h(VOCAB_ORDINARY + N_SPECIAL, STATE),
        "decoder/position_encodings/encodings": h(16, STATE),
        "decoder/layer_norm/gamma": h(STATE), "decoder/layer_norm/beta": h(STATE),
    }

    def qkv(prefix):
        v[f"{prefix}/weight"] = h(3 * STATE, STATE)
        b = h(3 * STATE)
        b[STATE : 2 * STATE] = 0  # Whisper's key projection has no bias
        v[f"{prefix}/bias"] = b

    def lin(prefix, o, i):
        v[f"{prefix}/weight"], v[f"{prefix}/bias"] = h(o, i), h(o)

    def norm(prefix):
        v[f"{prefix}/gamma"], v[f"{prefix}/beta"] = h(STATE), h(STATE)

    for side in ("encoder", "decoder"):
        s = f"{side}/layer_0"
        norm(f"{s}/self_attention/layer_norm")
        qkv(f"{s}/self_attention/linear_0")
        lin(f"{s}/self_attention/linear_1", STATE, STATE)
        norm(f"{s}/ffn/layer_norm")
        lin(f"{s}/ffn/linear_0", 4 * STATE, STATE)
        lin(f"{s}/ffn/linear_1", STATE, 4 * STATE)
    s = "decoder/layer_0/attention"
    norm(f"{s}/layer_norm")
    lin(f"{s}/linear_0", STATE, STATE)
    lin(f"{s}/linear_1", 2 * STATE, STATE)
    v[f"{s}/linear_1/bias"][:STATE] = 0
    lin(f"{s}/linear_2", STATE, STATE)
    return v


def write_model(d: Path, variables: dict, split: bool = True) -> None:
    d.mkdir(parents=True, exist_ok=True)
    data = ct2_bytes(variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    if split:
        half = len(data) // 2
        (d / "model.bin.part1").write_bytes(data[:half])
        (d / "model.bin.part2").write_bytes(data[half:])
    else:
        (d / "model.bin").write_bytes(data)
    table = {b: c for c, b in cw.byte_decoder().items()}
    words = ["".join(table[b] for b in f"tok{i} ".encode()) for i in range(VOCAB_ORDINARY - 1)]
    words.append("Ġ" + "".join(table[b] for b in "é".encode()))
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    (d / "vocabulary.txt").write_text("\n".join(words + specials), encoding="utf-8")


def read_ggml(path: Path) -> dict:
    """An independent reader of whisper.cpp's layout (what whisper_model_load expects)."""
    data = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    (magic,) = take("I")
    hp = take("11i")
    n_mel, n_fft = take("ii")
    filters = np.frombuffer(data, np.float32, n_mel * n_fft, pos).reshape(n_mel, n_fft)
    pos += filters.nbytes
    (n_vocab,) = take("i")
    vocab = []
    for _ in range(n_vocab):
        (n,) = take("I")
        vocab.append(data[pos : pos + n])
        pos += n
    tensors = {}
    sizes = {0: 4, 1: 2}
    while pos < len(data):
        n_dims, name_len, ttype = take("3i")
        ne = take(f"{n_dims}i")
        name = data[pos : pos + name_len].decode()
        pos += name_len
        count = int(np.prod(ne))
        if ttype in sizes:
            nbytes = count * sizes[ttype]
            arr = np.frombuffer(data, np.float32 if ttype == 0 else np.float16, count, pos)
            arr = arr.reshape(tuple(reversed(ne))).astype(np.float32)
        else:
            block, type_size = quants.GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
            nbytes = count // block * type_size
            raw = np.frombuffer(data, np.uint8, nbytes, pos)
            arr = quants.dequantize(raw.reshape(-1, ne[0] // block * type_size), GGMLQuantizationType(ttype))
            arr = arr.reshape(tuple(reversed(ne)))
        pos += nbytes
        tensors[name] = (ttype, arr)
    return {"magic": magic, "hparams": hp, "filters": filters, "vocab": vocab, "tensors": tensors}


@pytest.fixture
def converted(tmp_path):
    rng = np.random.default_rng(7)
    v = tiny_whisper(rng)
    ct2 = tmp_path / "ct2"
    write_model(ct2, v)
    mel = tmp_path / "mel.npz"
    filters = rng.random((MELS, 201)).astype(np.float32)
    np.savez(mel, mel_8=filters, mel_3=np.zeros((3, 201), np.float32))
    out = tmp_path / "out"
    record = cw.convert(ct2, mel, out, ["f16", "q8_0", "q5_1"])
    return v, filters, out, record


def test_f16_file_holds_every_tensor_under_whisper_cpp_names(converted):
    v, filters, out, record = converted
    g = read_ggml(out / "ggml-base-f16.bin")
    assert g["magic"] == 0x67676D6C
    assert g["hparams"] == (VOCAB_ORDINARY + N_SPECIAL, 30, STATE, HEADS, 1, 16, STATE, HEADS, 1, MELS, 1)
    assert np.array_equal(g["filters"], filters)
    assert len(g["vocab"]) == VOCAB_ORDINARY
    assert g["vocab"][3] == b"tok3 " and g["vocab"][-1] == " é".encode()
    t = g["tensors"]
    assert len(t) == 5 + 15 + 2 + 2 + 24 + 2  # whisper.cpp's count for one layer each side
    w = v["encoder/layer_0/self_attention/linear_0/weight"].astype(np.float32)
    assert np.array_equal(t["encoder.blocks.0.attn.query.weight"][1], w[:STATE])
    assert np.array_equal(t["encoder.blocks.0.attn.key.weight"][1], w[STATE : 2 * STATE])
    assert np.array_equal(t["encoder.blocks.0.attn.value.weight"][1], w[2 * STATE :])
    assert "encoder.blocks.0.attn.key.bias" not in t
    kv = v["decoder/layer_0/attention/linear_1/weight"].astype(np.float32)
    assert np.array_equal(t["decoder.blocks.0.cross_attn.value.weight"][1], kv[STATE:])
    assert t["encoder.conv1.bias"][1].shape == (STATE, 1) and t["encoder.conv1.bias"][0] == 0
    assert t["encoder.conv1.weight"][0] == 1 and t["encoder.conv1.weight"][1].shape == (STATE, MELS, 3)
    assert t["decoder.positional_embedding"][0] == 0
    assert record["files"]["f16"]["size"] == (out / "ggml-base-f16.bin").stat().st_size


def test_quantized_files_quantize_matrices_only_and_stay_close(converted):
    v, _, out, _ = converted
    f16 = read_ggml(out / "ggml-base-f16.bin")["tensors"]
    for kind, ttype, ftype, tol in (("q8_0", 8, 2007, 0.02), ("q5_1", 7, 2009, 0.12)):
        g = read_ggml(out / f"ggml-base-{kind}.bin")
        assert g["hparams"][-1] == ftype
        t = g["tensors"]
        assert t["decoder.token_embedding.weight"][0] == ttype
        assert t["encoder.blocks.0.mlp.0.weight"][0] == ttype
        assert t["encoder.conv2.weight"][0] == 1  # conv kernels stay f16
        assert t["encoder.blocks.0.mlp.0.bias"][0] == 0
        a, b = t["encoder.blocks.0.mlp.0.weight"][1], f16["encoder.blocks.0.mlp.0.weight"][1]
        rel = np.abs(a - b).max() / np.abs(b).max()
        assert rel < tol, (kind, rel)


def test_truncated_model_is_refused_with_the_file_named(tmp_path):
    v = tiny_whisper(np.random.default_rng(1))
    write_model(tmp_path, v, split=False)
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(cw.ConvertError, match=r"model\.bin.*truncated"):
        cw.parse_ct2(cw.read_model_bin(tmp_path), str(tmp_path / "model.bin"))


def test_non_whisper_and_key_bias_are_refused(tmp_path):
    v = tiny_whisper(np.random.default_rng(2))
    v["encoder/layer_0/self_attention/linear_0/bias"][STATE] = 1.0
    write_model(tmp_path / "kb", v)
    np.savez(tmp_path / "mel.npz", mel_8=np.zeros((MELS, 201), np.float32))
    with pytest.raises(cw.ConvertError, match="key bias"):
        cw.convert(tmp_path / "kb", tmp_path / "mel.npz", tmp_path / "o", ["f16"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.bin").write_bytes(ct2_bytes({"x": np.zeros(2, np.float32)}, {}, "TransformerSpec"))
    with pytest.raises(cw.ConvertError, match="not a WhisperSpec"):
        cw.convert(tmp_path / "other", tmp_path / "mel.npz", tmp_path / "o", ["f16"])


def test_fetch_extracts_from_an_sdist(tmp_path):
    payload = tmp_path / "mel_filters.npz"
    payload.write_bytes(b"filters")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(payload, arcname="pkg-1.0/assets/mel_filters.npz")
    spec = {"version": "1.0", "sha256": fetch.sha256_of(sdist), "files": {"pkg-1.0/assets/mel_filters.npz": "w/mel.npz"}}
    stamp = fetch.extract(sdist, "pkg", spec, tmp_path / "cache")
    assert (tmp_path / "cache" / "w" / "mel.npz").read_bytes() == b"filters"
    assert stamp["files"]["w/mel.npz"]["size"] == 7
    spec["files"] = {"pkg-1.0/missing": "w/x"}
    with pytest.raises(fetch.FetchError, match="no member"):
        fetch.extract(sdist, "pkg", spec, tmp_path / "cache")


def _ar(path, members):
    """A Debian-style `ar` archive of (name, bytes) members."""
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for name, body in members:
            f.write(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode())
            f.write(body + (b"\n" if len(body) % 2 else b""))


def test_fetch_extracts_a_directory_from_a_deb(tmp_path):
    import io

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        for arcname, body in [
            ("./usr/share/sounds/voice/hello.wav", b"hello"),
            ("./usr/share/sounds/voice/digits/1.wav", b"one"),
            ("./usr/share/doc/pkg/copyright", b"CC-BY-SA-3.0"),
        ]:
            info = tarfile.TarInfo(arcname)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    deb = tmp_path / "pkg_1.0_all.deb"
    # An odd-sized first member checks the ar padding.
    _ar(deb, [("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", data.getvalue())])
    spec = {
        "version": "1.0",
        "source": "debian",
        "sha256": fetch.sha256_of(deb),
        "dirs": {"./usr/share/sounds/voice/": "speech/prompts/voice/"},
    }
    cache = tmp_path / "cache"
    stamp = fetch.extract(deb, "pkg", spec, cache)
    assert (cache / "speech/prompts/voice/hello.wav").read_bytes() == b"hello"
    assert (cache / "speech/prompts/voice/digits/1.wav").read_bytes() == b"one"
    assert sorted(stamp["files"]) == ["speech/prompts/voice/digits/1.wav", "speech/prompts/voice/hello.wav"]
    fetch.stamp_path(cache, "pkg").parent.mkdir(parents=True)
    fetch.stamp_path(cache, "pkg").write_text(__import__("json").dumps(stamp))
    assert fetch.is_fresh(cache, "pkg", spec)
    (cache / "speech/prompts/voice/hello.wav").write_bytes(b"changed!")
    assert not fetch.is_fresh(cache, "pkg", spec)
    spec["dirs"] = {"./usr/share/nothing/": "x/"}
    with pytest.raises(fetch.FetchError, match="nothing under"):
        fetch.extract(deb, "pkg", spec, cache)
    (tmp_path / "not.deb").write_bytes(b"garbage")
    spec["sha256"] = fetch.sha256_of(tmp_path / "not.deb")
    with pytest.raises(fetch.FetchError, match="not a Debian package"):
        fetch.extract(tmp_path / "not.deb", "pkg", spec, cache)
