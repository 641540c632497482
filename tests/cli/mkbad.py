#!/usr/bin/python3
"""mkbad.py CASE DIR - writes a checkpoint into DIR that is malformed in one
way (CASE), for the CLI's bad-input tests.  Prints the file and the tensor
name the error message must mention (tab-separated; tensor may be '-')."""
import json
import os
import struct
import sys


def st_bytes(tensors, header_override=None, pad=True, data_extra=b"", meta=None):
    """tensors: list of (name, dtype, shape, bytes, offsets or None)."""
    header = {}
    if meta is not None:
        header["__metadata__"] = meta
    data = b""
    for name, dtype, shape, raw, offs in tensors:
        if offs is None:
            offs = [len(data), len(data) + len(raw)]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offs}
        data += raw
    text = header_override if header_override is not None else json.dumps(header).encode()
    if pad:
        text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data + data_extra


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


GOOD = [("a.weight", "F32", [4, 4], f32([0.5] * 16), None),
        ("b.weight", "F32", [4], f32([1.0] * 4), None)]


def write(d, name, blob):
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def main():
    case, d = sys.argv[1], sys.argv[2]
    os.makedirs(d, exist_ok=True)
    f, tensor = "model.safetensors", "-"
    if case == "short":
        write(d, f, b"\x10\x00\x00")
    elif case == "header_past_end":
        write(d, f, struct.pack("<Q", 5000) + b"{}")
    elif case == "header_huge":
        write(d, f, struct.pack("<Q", 100000001) + b"{}" + b" " * 64)
    elif case == "not_json":
        write(d, f, st_bytes([], header_override=b"{not json"))
    elif case == "not_object":
        write(d, f, st_bytes([], header_override=b"[1,2,3]"))
    elif case == "unknown_dtype":
        write(d, f, st_bytes([("a.weight", "Q4", [4, 4], f32([0] * 16), None)]))
        tensor = "a.weight"
    elif case == "size_mismatch":
        write(d, f, st_bytes([("a.weight", "F32", [4, 5], f32([0] * 16), None)]))
        tensor = "a.weight"
    elif case == "past_end":
        write(d, f, st_bytes([("a.weight", "F32", [4, 4], f32([0] * 16), [0, 64]),
                              ("b.weight", "F32", [4], b"", [64, 80])]))
        tensor = "b.weight"
    elif case == "overlap":
        write(d, f, st_bytes([("a.weight", "F32", [4, 4], f32([0] * 16), [0, 64]),
                              ("b.weight", "F32", [4], f32([0] * 4), [48, 64])]))
        tensor = "b.weight"
    elif case == "hole":
        write(d, f, st_bytes([("a.weight", "F32", [4, 4], f32([0] * 16), [0, 64]),
                              ("b.weight", "F32", [4], f32([0] * 8), [80, 96])]))
        tensor = "b.weight"
    elif case == "trailing_data":
        write(d, f, st_bytes(GOOD, data_extra=b"\0" * 16))
    elif case == "truncated":
        write(d, f, st_bytes(GOOD)[:-10])
    elif case == "metadata_nonstring":
        write(d, f, st_bytes(GOOD, meta={"format": 3}))
    elif case == "nan":
        vals = [0.25] * 16
        vals[3] = float("nan")
        vals[7] = float("inf")
        write(d, f, st_bytes([("a.weight", "F32", [4, 4], f32(vals), None)]))
        tensor = "a.weight"
    elif case in ("index_missing_shard", "index_absent_tensor", "index_two_shards"):
        write(d, "model-00001-of-00002.safetensors", st_bytes(GOOD))
        wm = {"a.weight": "model-00001-of-00002.safetensors",
              "b.weight": "model-00001-of-00002.safetensors"}
        if case == "index_missing_shard":
            wm["c.weight"] = "model-00002-of-00002.safetensors"
            f, tensor = "model-00002-of-00002.safetensors", "-"
        elif case == "index_absent_tensor":
            wm["c.weight"] = "model-00001-of-00002.safetensors"
            f, tensor = "model-00001-of-00002.safetensors", "c.weight"
        else:
            write(d, "model-00002-of-00002.safetensors",
                  st_bytes([("a.weight", "F32", [4, 4], f32([0] * 16), None)]))
            wm["a.weight"] = "model-00002-of-00002.safetensors"
            f, tensor = "model-00001-of-00002.safetensors", "a.weight"
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {}, "weight_map": wm}, fh)
    elif case == "index_escape":
        write(d, "model-00001-of-00001.safetensors", st_bytes(GOOD))
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
            json.dump({"weight_map": {"a.weight": "../x.safetensors",
                                      "b.weight": "model-00001-of-00001.safetensors"}}, fh)
        f = "model.safetensors.index.json"
    else:
        sys.exit("unknown case " + case)
    print(f + "\t" + tensor)


if __name__ == "__main__":
    main()
