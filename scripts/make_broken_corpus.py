#!/usr/bin/env python3
"""Writes tests/data/broken/: small deliberately broken GGUF and safetensors files, built byte by
byte here (independently of pdvm's writers), plus EXPECTED.txt: one line per file,
"<file>\t<text the error message must contain>". tests/test_gguf.cpp and
tests/test_safetensors.cpp open every file and require a non-ok Status with that text; the
fuzzer (fuzz/fuzz_loaders.cpp) can use the directory as its seed corpus.

Usage: python3 scripts/make_broken_corpus.py [out_dir]
"""
import json
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
GGML_F32, GGML_Q8_0 = 0, 8


def s(x):  # GGUF string
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name, dims, ggml_type, offset, n_dims=None):
    n = len(dims) if n_dims is None else n_dims
    return s(name) + struct.pack("<I", n) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


def gguf(kvs=(), tensors=(), data=b"", version=3, magic=b"GGUF", n_tensors=None, n_kvs=None,
         alignment=32, version_bytes=None):
    head = magic + (version_bytes if version_bytes else struct.pack("<I", version))
    head += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                        len(kvs) if n_kvs is None else n_kvs)
    head += b"".join(kvs) + b"".join(tensors)
    head += b"\0" * ((-len(head)) % alignment)
    return head + data


ARCH = kv("general.architecture", STRING, s("llama"))
T64 = tinfo("t", [16], GGML_F32, 0)  # 64 bytes of F32
D64 = bytes(range(64))


def gguf_cases():
    c = {}
    c["empty.gguf"] = (b"", "not a GGUF file")
    c["wrong_magic.gguf"] = (gguf([ARCH], [T64], D64, magic=b"GGUG"), "not a GGUF file")
    c["v1.gguf"] = (gguf([ARCH], [T64], D64, version=1), "version 1")
    c["v4.gguf"] = (gguf([ARCH], [T64], D64, version=4), "GGUF version 4")
    c["big_endian.gguf"] = (gguf([ARCH], [T64], D64, version_bytes=struct.pack(">I", 3)),
                            "big-endian")
    c["header_only.gguf"] = (b"GGUF\x03\0\0\0\x01", "tensor count")
    c["huge_kv_count.gguf"] = (gguf([ARCH], [T64], D64, n_kvs=1 << 60), "key/value pairs")
    c["huge_tensor_count.gguf"] = (gguf([ARCH], [T64], D64, n_tensors=1 << 60), "tensors, but")
    c["huge_key_length.gguf"] = (gguf([struct.pack("<Q", 1 << 60) + b"general"], [T64], D64),
                                 "says 1152921504606846976 bytes")
    c["huge_string_value.gguf"] = (
        gguf([kv("general.name", STRING, struct.pack("<Q", 1 << 62) + b"abc")], [T64], D64),
        "says 4611686018427387904 bytes")
    c["huge_array.gguf"] = (
        gguf([kv("tokenizer.ggml.token_type", ARRAY, struct.pack("<IQ", I32, 1 << 60))], [T64],
             D64), "claims 1152921504606846976 i32 elements")
    c["huge_string_array.gguf"] = (
        gguf([kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, (1 << 64) - 1))],
             [T64], D64), "string elements")
    c["string_array_elem_past_end.gguf"] = (
        gguf([kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 2) + s("a") +
                 struct.pack("<Q", 1 << 40))], [], b""), "key 'tokenizer.ggml.tokens' element")
    c["nested_array.gguf"] = (
        gguf([kv("x", ARRAY, struct.pack("<IQ", ARRAY, 1) + struct.pack("<IQ", U8, 1) + b"\1")],
             [T64], D64), "array of arrays")
    c["bad_value_type.gguf"] = (gguf([kv("x", 13, b"\0" * 8)], [T64], D64), "value type 13")
    c["bad_array_elem_type.gguf"] = (gguf([kv("x", ARRAY, struct.pack("<IQ", 99, 1) + b"\0" * 8)],
                                          [T64], D64), "element type 99")
    c["bad_bool.gguf"] = (gguf([kv("tokenizer.ggml.add_bos_token", BOOL, b"\x02")], [T64], D64),
                          "expected 0 or 1")
    c["duplicate_key.gguf"] = (gguf([ARCH, ARCH], [T64], D64), "appears twice")
    c["truncated_kv.gguf"] = (gguf([ARCH], [T64], D64)[:60], "key 'general.architecture'")
    c["alignment_not_pow2.gguf"] = (
        gguf([kv("general.alignment", U32, struct.pack("<I", 48))], [T64], D64, alignment=48),
        "power of two")
    c["alignment_4.gguf"] = (gguf([kv("general.alignment", U32, struct.pack("<I", 4))], [T64],
                                  D64, alignment=4), "at least 8")
    c["alignment_zero.gguf"] = (gguf([kv("general.alignment", U32, struct.pack("<I", 0))], [T64],
                                     D64), "power of two")
    c["alignment_string.gguf"] = (gguf([kv("general.alignment", STRING, s("32"))], [T64], D64),
                                  "expected a u32")
    c["too_many_dims.gguf"] = (gguf([ARCH], [tinfo("t", [1, 1, 1, 1, 16], GGML_F32, 0)], D64),
                               "at most 4")
    c["huge_n_dims.gguf"] = (gguf([ARCH], [tinfo("t", [16], GGML_F32, 0, n_dims=0xFFFFFFFF)], D64),
                             "at most 4")
    c["huge_dim.gguf"] = (gguf([ARCH], [tinfo("t", [1 << 63], GGML_F32, 0)], D64), "above 2^63")
    c["dims_overflow.gguf"] = (gguf([ARCH], [tinfo("t", [1 << 32, 1 << 32, 1 << 32], GGML_F32, 0)],
                                    D64), "overflow")
    c["dims_overflow_bytes.gguf"] = (gguf([ARCH], [tinfo("t", [1 << 62, 2], GGML_F32, 0)], D64),
                                     "overflow")
    c["dims_not_multiple_of_block.gguf"] = (
        gguf([ARCH], [tinfo("t", [33, 1], GGML_Q8_0, 0)], D64), "not a multiple of the Q8_0 block")
    c["unknown_ggml_type.gguf"] = (gguf([ARCH], [tinfo("t", [16], 1000, 0)], D64),
                                   "unknown ggml type id 1000")
    c["removed_ggml_type.gguf"] = (gguf([ARCH], [tinfo("t", [32], 4, 0)], D64),
                                   "unknown ggml type id 4")
    c["offset_past_end.gguf"] = (gguf([ARCH], [tinfo("t", [16], GGML_F32, 1 << 20)], D64),
                                 "runs past the end of the file")
    c["offset_overflow.gguf"] = (gguf([ARCH], [tinfo("t", [16], GGML_F32, (1 << 64) - 32)], D64),
                                 "runs past the end of the file")
    c["tensor_past_end.gguf"] = (gguf([ARCH], [tinfo("t", [32], GGML_F32, 0)], D64),
                                 "runs past the end of the file")
    c["misaligned_offset.gguf"] = (
        gguf([ARCH], [tinfo("a", [8], GGML_F32, 0), tinfo("b", [4], GGML_F32, 36)], D64),
        "not a multiple of the alignment")
    c["duplicate_tensor.gguf"] = (
        gguf([ARCH], [tinfo("t", [8], GGML_F32, 0), tinfo("t", [8], GGML_F32, 32)], D64),
        "name appears twice")
    c["overlapping_tensors.gguf"] = (
        gguf([ARCH], [tinfo("a", [16], GGML_F32, 0), tinfo("b", [8], GGML_F32, 32)], D64),
        "overlaps")
    c["no_data_section.gguf"] = (gguf([ARCH], [T64], b"")[:-1], "past the end")
    return c


def st(header, data=b"", raw=None, length=None):
    h = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


F4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}


def st_cases():
    c = {}
    c["empty.safetensors"] = (b"", "too short")
    c["short.safetensors"] = (b"\x10\0\0", "too short")
    c["header_past_eof.safetensors"] = (st(None, raw=b'{"a": 1}', length=1000), "runs past the end")
    c["header_huge.safetensors"] = (st(None, raw=b"{}", length=1 << 63), "100 MB")
    c["not_json_object.safetensors"] = (st([1, 2]), "start with '{'")
    c["invalid_json.safetensors"] = (st(None, raw=b'{"a": {"dtype": '), "not valid JSON")
    c["invalid_utf8.safetensors"] = (st(None, raw=b'{"\xff\xfe": 1}'), "not valid JSON")
    c["tensor_not_object.safetensors"] = (st({"a": 5}), "expected an object")
    c["missing_offsets.safetensors"] = (st({"a": {"dtype": "F32", "shape": [4]}}, bytes(16)),
                                        "needs 'dtype', 'shape' and 'data_offsets'")
    c["bad_dtype.safetensors"] = (st({"a": {**F4, "dtype": 5}}, bytes(16)), "dtype is 5")
    c["empty_dtype.safetensors"] = (st({"a": {**F4, "dtype": ""}}, bytes(16)), "dtype is \"\"")
    c["shape_not_array.safetensors"] = (st({"a": {**F4, "shape": 4}}, bytes(16)),
                                        "expected an array")
    c["negative_shape.safetensors"] = (st({"a": {**F4, "shape": [-4]}}, bytes(16)),
                                       "not a non-negative integer")
    c["float_shape.safetensors"] = (st({"a": {**F4, "shape": [4.0]}}, bytes(16)),
                                    "not a non-negative integer")
    c["shape_overflow.safetensors"] = (st({"a": {**F4, "shape": [1 << 62, 8]}}, bytes(16)),
                                       "more than 2^64 elements")
    c["shape_bits_overflow.safetensors"] = (st({"a": {**F4, "shape": [1 << 62]}}, bytes(16)),
                                            "overflows 2^64 bits")
    c["offsets_float.safetensors"] = (st({"a": {**F4, "data_offsets": [0, 16.0]}}, bytes(16)),
                                      "data_offsets is")
    c["offsets_three.safetensors"] = (st({"a": {**F4, "data_offsets": [0, 16, 32]}}, bytes(16)),
                                      "data_offsets is")
    c["begin_after_end.safetensors"] = (st({"a": {**F4, "data_offsets": [16, 0]}}, bytes(16)),
                                        "ends before it begins")
    c["end_past_data.safetensors"] = (st({"a": {**F4, "data_offsets": [0, 100]}}, bytes(16)),
                                      "runs past the end of the file")
    c["end_huge.safetensors"] = (st({"a": {**F4, "data_offsets": [0, (1 << 64) - 1]}}, bytes(16)),
                                 "runs past the end of the file")
    c["shape_size_mismatch.safetensors"] = (st({"a": {**F4, "shape": [2, 3]}}, bytes(16)),
                                            "needs 24 bytes")
    c["sub_byte_mismatch.safetensors"] = (
        st({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2)),
        "not a whole number of bytes")
    c["overlap.safetensors"] = (
        st({"a": F4, "b": {**F4, "data_offsets": [8, 24]}}, bytes(24)), "overlap tensor 'a'")
    c["hole.safetensors"] = (st({"a": {**F4, "data_offsets": [16, 32]}}, bytes(32)),
                             "no tensor accounts for")
    c["trailing_bytes.safetensors"] = (st({"a": F4}, bytes(20)), "trailing bytes")
    c["duplicate_key.safetensors"] = (
        st(None, raw=b'{"a": ' + json.dumps(F4).encode() + b', "a": ' +
           json.dumps(F4).encode() + b"}", data=bytes(16)), "repeats the key 'a'")
    c["metadata_not_object.safetensors"] = (st({"__metadata__": [1], "a": F4}, bytes(16)),
                                            "__metadata__ is a JSON array")
    c["metadata_not_string.safetensors"] = (st({"__metadata__": {"x": 1}, "a": F4}, bytes(16)),
                                            "expected a string")
    return c


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "broken")
    os.makedirs(out_dir, exist_ok=True)
    cases = {**gguf_cases(), **st_cases()}
    with open(os.path.join(out_dir, "EXPECTED.txt"), "w") as m:
        for name, (data, expected) in sorted(cases.items()):
            with open(os.path.join(out_dir, name), "wb") as f:
                f.write(data)
            m.write(f"{name}\t{expected}\n")
    print(len(cases), "files,", sum(len(d) for d, _ in cases.values()), "bytes in", out_dir)


if __name__ == "__main__":
    main()
