"""safetensors in NumPy: round trips for every dtype, bfloat16 rounding, and crafted broken files."""
import json
import struct

import numpy as np
import pytest

from tinylm.io.safetensors import (
    bf16_to_float32,
    float32_to_bf16,
    iter_safetensors,
    read_safetensors,
    safetensors_header,
    write_safetensors,
)


def raw_file(path, header, data=b"", header_bytes=None, length=None):
    """Write a safetensors file by hand: 8-byte length, JSON header, data. Lets a test lie in any part."""
    h = json.dumps(header).encode() if header_bytes is None else header_bytes
    n = len(h) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + h + data)
    return path


# ---------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                                   np.int8, np.uint8, np.bool_])
def test_round_trip_keeps_values_dtype_and_shape(tmp_path, dtype):
    rng = np.random.default_rng(0)
    tensors = {
        "matrix": (rng.normal(size=(3, 5)) * 50).astype(dtype),
        "scalar": np.array(7).astype(dtype),
        "empty": np.zeros((0, 4), dtype=dtype),
        "cube": (rng.normal(size=(2, 3, 4)) * 50).astype(dtype),
    }
    write_safetensors(tmp_path / "t.safetensors", tensors)
    back = read_safetensors(tmp_path / "t.safetensors")
    assert set(back) == set(tensors)
    for name, a in tensors.items():
        assert back[name].dtype == a.dtype and back[name].shape == a.shape, name
        np.testing.assert_array_equal(back[name], a)


def test_mixed_dtypes_are_aligned_and_match_the_format_byte_for_byte(tmp_path):
    """The file layout is checked by parsing it independently of read_safetensors."""
    tensors = {"a_i8": np.array([1, -2, 3], dtype=np.int8), "b_f64": np.array([0.5, -1.25]),
               "c_f16": np.array([[1.5, 2.0]], dtype=np.float16), "d_f32": np.arange(3, dtype=np.float32)}
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, metadata={"format": "pt"})
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0  # padded header: the data area starts 8-aligned
    header = json.loads(blob[8:8 + n])
    assert header.pop("__metadata__") == {"format": "pt"}
    data = blob[8 + n:]
    for name, a in tensors.items():
        begin, end = header[name]["data_offsets"]
        assert (8 + n + begin) % a.itemsize == 0, f"{name} is not aligned to its element size"
        assert data[begin:end] == a.astype(a.dtype.newbyteorder("<")).tobytes()
        assert header[name]["shape"] == list(a.shape)
    assert [header[k]["dtype"] for k in ("a_i8", "b_f64", "c_f16", "d_f32")] == ["I8", "F64", "F16", "F32"]


def test_metadata_round_trip_and_default(tmp_path):
    write_safetensors(tmp_path / "m.safetensors", {"x": np.ones(2, np.float32)}, metadata={"k": "v", "é": "ü"})
    tensors, meta = read_safetensors(tmp_path / "m.safetensors", metadata=True)
    assert meta == {"k": "v", "é": "ü"}
    write_safetensors(tmp_path / "n.safetensors", {"x": np.ones(2, np.float32)})
    assert read_safetensors(tmp_path / "n.safetensors", metadata=True)[1] == {}


def test_an_empty_file_of_tensors_round_trips(tmp_path):
    write_safetensors(tmp_path / "e.safetensors", {})
    assert read_safetensors(tmp_path / "e.safetensors") == {}


def test_arrays_are_copy_on_write_views_that_never_change_the_file(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"w": np.zeros((2, 2), np.float32)})
    w = read_safetensors(path)["w"]
    w[0, 0] = 5.0  # allowed: changes this process's copy of the page
    assert read_safetensors(path)["w"][0, 0] == 0.0


def test_reads_big_endian_and_non_contiguous_input_correctly(tmp_path):
    a = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]  # big-endian and strided
    write_safetensors(tmp_path / "t.safetensors", {"a": a})
    back = read_safetensors(tmp_path / "t.safetensors")["a"]
    np.testing.assert_array_equal(back, a)
    assert back.dtype == np.float32


# ---------------------------------------------------------------------------- bfloat16

def test_bf16_is_the_top_half_of_float32():
    # 1.0 = 0x3F800000, -2.0 = 0xC0000000, 2^-126 = 0x00800000, inf = 0x7F800000
    bits = np.array([0x3F80, 0xC000, 0x0080, 0x7F80], dtype=np.uint16)
    np.testing.assert_array_equal(bf16_to_float32(bits), np.array([1.0, -2.0, 2.0 ** -126, np.inf], np.float32))


def test_float32_to_bf16_rounds_to_nearest_ties_to_even():
    def f32(bits):
        return np.array([bits], dtype=np.uint32).view(np.float32)

    assert float32_to_bf16(f32(0x3F807FFF))[0] == 0x3F80  # below half: down
    assert float32_to_bf16(f32(0x3F808001))[0] == 0x3F81  # above half: up (truncation would give 0x3F80)
    assert float32_to_bf16(f32(0x3F808000))[0] == 0x3F80  # tie, 0x3F80 is even: stays
    assert float32_to_bf16(f32(0x3F818000))[0] == 0x3F82  # tie, 0x3F81 is odd: up to even
    assert float32_to_bf16(f32(0xBF818000))[0] == 0xBF82  # negative numbers round the same way
    assert float32_to_bf16(f32(0x7F7FFFFF))[0] == 0x7F80  # float32 max rounds to infinity
    nan = float32_to_bf16(f32(0x7F800001))[0]  # a NaN whose payload lives only in the low bits
    assert np.isnan(bf16_to_float32(np.array([nan], np.uint16)))[0]


def test_bf16_round_trip_error_is_at_most_half_a_unit(tmp_path):
    x = np.random.default_rng(1).normal(size=1000).astype(np.float32) * 100
    write_safetensors(tmp_path / "b.safetensors", {"x": x}, dtypes={"x": "BF16"})
    header = json.loads((tmp_path / "b.safetensors").read_bytes()[8:][:200].split(b"}}")[0] + b"}}")
    assert header["x"]["dtype"] == "BF16"
    back = read_safetensors(tmp_path / "b.safetensors")["x"]
    assert back.dtype == np.float32
    # bfloat16 keeps 8 significant bits: between 2^e and 2^(e+1) its values are 2^(e-7) apart, and
    # rounding to nearest errs by at most half of that, 2^(e-8)
    _, e = np.frexp(x)  # x = m * 2^e with 0.5 <= |m| < 1, so 2^(e-1) <= |x| < 2^e
    assert np.all(np.abs(back - x) <= np.ldexp(1.0, e - 1 - 8))
    assert np.abs(back - x).max() > 0  # and it did round something
    exact = bf16_to_float32(float32_to_bf16(x))  # values already bf16 survive unchanged
    write_safetensors(tmp_path / "c.safetensors", {"x": exact}, dtypes={"x": "BF16"})
    np.testing.assert_array_equal(read_safetensors(tmp_path / "c.safetensors")["x"], exact)


def test_float_to_f16_override_and_refused_overrides(tmp_path):
    write_safetensors(tmp_path / "h.safetensors", {"x": np.array([1 / 3], np.float32)}, dtypes={"x": "F16"})
    back = read_safetensors(tmp_path / "h.safetensors")["x"]
    assert back.dtype == np.float16 and back[0] == np.float16(1 / 3)
    with pytest.raises(ValueError, match="cannot store tensor 'i'"):
        write_safetensors(tmp_path / "i.safetensors", {"i": np.arange(3)}, dtypes={"i": "BF16"})
    with pytest.raises(ValueError, match="not in tensors"):
        write_safetensors(tmp_path / "i.safetensors", {"i": np.arange(3)}, dtypes={"j": "F16"})


def test_write_rejects_bad_names_dtypes_and_metadata(tmp_path):
    with pytest.raises(TypeError, match="dtype complex128"):
        write_safetensors(tmp_path / "x.safetensors", {"z": np.ones(2, complex)})
    with pytest.raises(ValueError, match="__metadata__"):
        write_safetensors(tmp_path / "x.safetensors", {"__metadata__": np.ones(2)})
    with pytest.raises(TypeError, match="metadata"):
        write_safetensors(tmp_path / "x.safetensors", {"a": np.ones(2)}, metadata={"n": 1})
    assert not (tmp_path / "x.safetensors").exists()


# ---------------------------------------------------------------------------- broken files

F32_2x2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


def test_a_valid_hand_made_file_is_read(tmp_path):
    """The crafting helper itself makes readable files, so the failures below are the lies they tell."""
    path = raw_file(tmp_path / "ok.safetensors", {"w": F32_2x2}, np.arange(4, dtype="<f4").tobytes())
    np.testing.assert_array_equal(read_safetensors(path)["w"], [[0, 1], [2, 3]])


@pytest.mark.parametrize("header, data, problem", [
    ({"w": {**F32_2x2, "dtype": "F8_E4M3X"}}, bytes(16), "unknown dtype 'F8_E4M3X'"),
    ({"w": {**F32_2x2, "shape": [2, 3]}}, bytes(16), "needs 24"),
    ({"w": {**F32_2x2, "shape": [2, -2]}}, bytes(16), "non-negative integers"),
    ({"w": {**F32_2x2, "shape": [2, 2.0]}}, bytes(16), "non-negative integers"),
    ({"w": {**F32_2x2, "data_offsets": [0, 32]}}, bytes(16), "outside the data area of 16 bytes"),
    ({"w": {**F32_2x2, "data_offsets": [8, 24]}}, bytes(24), "leaves a gap at byte 0"),
    ({"w": {**F32_2x2, "data_offsets": [16, 0]}}, bytes(16), "outside the data area"),
    ({"w": {**F32_2x2, "data_offsets": [0]}}, bytes(16), "expected \\[begin, end\\]"),
    ({"w": F32_2x2, "v": {**F32_2x2, "data_offsets": [8, 24]}}, bytes(24), "overlaps the previous tensor"),
    ({"w": F32_2x2}, bytes(20), "cover 16 bytes of the 20-byte data area"),
    ({"w": {"dtype": "F32", "shape": [4]}}, bytes(16), "exactly dtype, shape and data_offsets"),
    ({"w": F32_2x2, "__metadata__": {"n": 1}}, bytes(16), "__metadata__ must be an object of strings"),
    ([1, 2, 3], b"", "JSON list, not an object"),
    ({"w": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07", "other than 0 and 1"),
])
def test_lying_headers_are_rejected(tmp_path, header, data, problem):
    path = raw_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ValueError, match=problem) as info:
        read_safetensors(path)
    assert "bad.safetensors is not a valid safetensors file" in str(info.value)


def test_truncated_files_are_rejected(tmp_path):
    good = tmp_path / "good.safetensors"
    write_safetensors(good, {"w": np.arange(100, dtype=np.float32)})
    blob = good.read_bytes()
    for cut, problem in [(3, "fewer than the 8-byte header length"), (20, "truncated file"),
                         (len(blob) - 4, r"data_offsets \[0, 400\], outside the data area of 396 bytes")]:
        (tmp_path / "cut.safetensors").write_bytes(blob[:cut])
        with pytest.raises(ValueError, match=problem):
            read_safetensors(tmp_path / "cut.safetensors")


def test_a_huge_header_length_is_refused_before_allocating(tmp_path):
    path = raw_file(tmp_path / "huge.safetensors", {}, length=2 ** 63)
    with pytest.raises(ValueError, match="more than the 100000000"):
        read_safetensors(path)
    path = raw_file(tmp_path / "long.safetensors", {}, length=10_000)  # plausible, but past the end
    with pytest.raises(ValueError, match="only 2 bytes follow it"):
        read_safetensors(path)


def test_a_huge_shape_is_a_size_mismatch_not_an_allocation(tmp_path):
    header = {"w": {"dtype": "F64", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 16]}}
    with pytest.raises(ValueError, match="needs 9671406556917033397649408"):
        read_safetensors(raw_file(tmp_path / "big.safetensors", header, bytes(16)))


def test_bad_json_and_duplicate_names_are_rejected(tmp_path):
    for blob, problem in [(b'{"w": {"dtype": "F32",', "not valid UTF-8 JSON"),
                          (b"\xff\xfe{}", "not valid UTF-8 JSON"),
                          (b"[" * 100_000 + b"]" * 100_000, "not valid UTF-8 JSON"),  # nested past the stack
                          (b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 0]}}',
                           # Python >= 3.11 refuses 5000-digit ints; older versions: a size mismatch
                           "not valid UTF-8 JSON|needs"),
                          (b'{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
                           b'"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', "names 'w' twice")]:
        path = raw_file(tmp_path / "j.safetensors", None, header_bytes=blob)
        with pytest.raises(ValueError, match=problem):
            read_safetensors(path)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        read_safetensors(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------------------- header only, one tensor at a time

def test_header_and_streaming_reads_agree_with_read_safetensors(tmp_path):
    tensors = {"b": np.arange(6, dtype=np.int16).reshape(2, 3), "a": np.linspace(0, 1, 5),
               "h": np.array([1.5, -3.25], np.float32)}
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, metadata={"format": "pt"}, dtypes={"h": "BF16"})
    header, meta = safetensors_header(path)
    assert header == {"a": ("F64", (5,)), "b": ("I16", (2, 3)), "h": ("BF16", (2,))} and meta == {"format": "pt"}
    streamed = dict(iter_safetensors(path))
    mapped = read_safetensors(path)
    for name in tensors:
        assert streamed[name].dtype == mapped[name].dtype
        np.testing.assert_array_equal(streamed[name], mapped[name])
    assert [name for name, _ in iter_safetensors(path, ["h", "b"])] == ["h", "b"]
    with pytest.raises(KeyError):
        list(iter_safetensors(path, ["nope"]))


def test_streaming_checks_the_whole_header_before_yielding(tmp_path):
    header = {"w": F32_2x2, "v": {"dtype": "F32", "shape": [1], "data_offsets": [16, 24]}}  # v: 8 bytes for 4
    path = raw_file(tmp_path / "bad.safetensors", header, bytes(24))
    with pytest.raises(ValueError, match="'v' has 8 bytes"):
        next(iter_safetensors(path))
