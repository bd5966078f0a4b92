#!/usr/bin/env python3
"""Drive AutoMegaKernel's own lowering for the toy preset's shape (test data for test_refvm).

AMK's programs hold the decode position as constants, so one program is written per position:
OUT/amk_p{pos}.json, each checked with AMK's validate() first. The model is a config-only
stand-in with the toy preset's numbers and Hugging Face key names, so `amk weights random
--model toy` binds to it. Only AMK's public entry points are called; nothing of AMK is copied.

--quant 8|4 --weights W (an F32 file of `amk weights random --model toy`) lowers AMK's
weight-only quantized form of every projection and writes, from W, OUT/q.safetensors (each
projection groupwise symmetric: I8 [N, K], or int4 nibbles q+8 packed two per byte in U8
[N, K/2] with the even column in the low nibble; F16 scales [N, n_groups] under KEY.scales; the
rest F32) and OUT/deq.safetensors (every tensor F32, the projections dequantized exactly as
q * scale), the weights the eager forward must match. The quantizer is written here from that
storage description (SPEC 10.1), not taken from AMK.

usage: amk_lower.py --amk AMK_SRC --out DIR --positions 0,1,2 [--max-seq S] [--batch B]
                    [--partitions P] [--n-tile N] [--quant 8|4 --weights W --group G]
exit 0 when every program was written and validated, 1 when validate() rejected one, 2 on bad use.
"""
import json
import struct
import argparse
import os
import sys


class ToyConfig:
    """The toy preset (SPEC 8.1) as the attributes AMK's from_hf reads."""
    hidden_size = 64
    num_hidden_layers = 2
    num_attention_heads = 4
    num_key_value_heads = 2
    head_dim = 16
    intermediate_size = 128
    vocab_size = 256
    rms_norm_eps = 1e-5
    rope_theta = 10000.0
    rope_scaling = None
    hidden_act = "silu"
    tie_word_embeddings = False
    max_position_embeddings = 256


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
               "lm_head")


def read_safetensors(path):
    """{name: (dtype, shape, bytes)} of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, off = {}, 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for t in tensors:
            f.write(t[3])


def quantize(w, n, k, bits, group):
    """Symmetric groupwise quantization of row-major floats w [n, k]: (q ints, f16 scales as
    floats, scales' f16 bytes). q in [-127, 127] (8 bits) or [-8, 7] (4 bits)."""
    qmax = 127 if bits == 8 else 7
    qmin = -qmax if bits == 8 else -8
    n_groups = (k + group - 1) // group
    q, scales, raw = [0] * (n * k), [], b""
    for r in range(n):
        for g in range(n_groups):
            cols = range(g * group, min(k, (g + 1) * group))
            scale = max(max(abs(w[r * k + c]) for c in cols) / qmax, 1e-8)
            half = struct.pack("<e", scale)
            scales.append(struct.unpack("<e", half)[0])
            raw += half
            for c in cols:
                q[r * k + c] = max(qmin, min(qmax, round(w[r * k + c] / scale)))
    return q, scales, raw, n_groups


def quantize_file(src, out_dir, bits, group):
    """Write OUT/q.safetensors and OUT/deq.safetensors; returns AMK's QuantMeta-shaped keys."""
    qt, dq, keys = [], [], {}
    for name, (dt, shape, raw) in read_safetensors(src).items():
        if dt != "F32":
            raise SystemExit(f"{src}: {name} is {dt}, want F32")
        if len(shape) != 2 or not any(p in name for p in PROJECTIONS):
            qt.append((name, dt, shape, raw))
            dq.append((name, dt, shape, raw))
            continue
        n, k = shape
        w = struct.unpack(f"<{n * k}f", raw)
        q, scales, sraw, n_groups = quantize(w, n, k, bits, group)
        if bits == 8:
            packed = struct.pack(f"<{n * k}b", *q)
            qt.append((name, "I8", [n, k], packed))
        else:
            kp = (k + 1) // 2
            nib = [[q[r * k + c] + 8 if c < k else 0 for c in range(2 * kp)] for r in range(n)]
            packed = bytes(nib[r][2 * j] | nib[r][2 * j + 1] << 4 for r in range(n)
                           for j in range(kp))
            qt.append((name, "U8", [n, kp], packed))
        qt.append((name + ".scales", "F16", [n, n_groups], sraw))
        deq = [q[r * k + c] * scales[r * n_groups + c // group] for r in range(n) for c in range(k)]
        dq.append((name, "F32", [n, k], struct.pack(f"<{n * k}f", *deq)))
        keys[name] = {"N": n, "K": k, "n_groups": n_groups, "has_zeros": False}
    write_safetensors(os.path.join(out_dir, "q.safetensors"), qt)
    write_safetensors(os.path.join(out_dir, "deq.safetensors"), dq)
    return keys


class QuantMeta:
    """The fields AMK's lowering reads from its quantization metadata."""

    def __init__(self, bits, group, keys):
        self.bits, self.group, self.symmetric, self.keys = bits, group, True, keys

    def is_quantized(self, key):
        return key in self.keys


class ToyModel:
    def __init__(self, max_seq):
        self.config = ToyConfig()
        self.config.max_position_embeddings = max_seq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--amk", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--positions", required=True)
    ap.add_argument("--max-seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--n-tile", type=int, default=0)
    ap.add_argument("--quant", type=int, choices=(0, 4, 8), default=0)
    ap.add_argument("--weights")
    ap.add_argument("--group", type=int, default=32)
    a = ap.parse_args()
    if a.quant and not a.weights:
        ap.error("--quant needs --weights")
    sys.path.insert(0, a.amk)
    from schedule.graph import from_hf
    from schedule.ir import TARGETS, DType, ScheduleConfig, validate
    from schedule.lower import lower

    tiling = {}
    if a.n_tile:
        tiling["gemv"] = {"N_tile": a.n_tile}
    if a.partitions > 1:
        tiling["attention"] = {"n_partitions": a.partitions}
    graph = from_hf(ToyModel(a.max_seq))
    os.makedirs(a.out, exist_ok=True)
    quant = None
    if a.quant:
        quant = QuantMeta(a.quant, a.group, quantize_file(a.weights, a.out, a.quant, a.group))
    for pos in (int(p) for p in a.positions.split(",")):
        prog = lower(graph, TARGETS["h100"], ScheduleConfig(tiling=tiling), pos=pos,
                     dtype=DType.F32, quant=quant, B=a.batch)
        r = validate(prog)
        if not r.ok:
            print(f"pos {pos}: AMK validate rejected its own program: {r.errors[:3]}")
            return 1
        prog.save(os.path.join(a.out, f"amk_p{pos}.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
