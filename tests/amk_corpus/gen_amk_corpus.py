#!/usr/bin/env python3
"""Generate the AMK-lowered program corpus (tests/amk_corpus/).

Every program in this corpus is produced by AutoMegaKernel's OWN pure-Python lowering
(``schedule.graph.from_hf`` + ``schedule.lower.lower``) and checked with AMK's OWN validator
(``schedule.ir.validate``).  This script only *drives* an AMK checkout that the caller supplies;
it contains no AMK code.  torch is not needed: the HF model is a config-only stand-in, and the
weight-quantization metadata (normally built by ``schedule.quantize``, which imports torch) is a
duck-typed object carrying exactly the fields the lowerer reads.

Usage:
    python3 gen_amk_corpus.py --amk /path/to/AutoMegaKernel --out DIR [--commit SHA]
                              [--only NAME[,NAME...]] [--gzip-threshold BYTES]

Writes DIR/NAME.json (or DIR/NAME.json.gz, gzip with mtime=0, for JSON larger than the
threshold) and DIR/MANIFEST.tsv.  Output is byte-reproducible for a given AMK commit.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import types

GZIP_THRESHOLD = 300_000          # bytes of JSON above which a program is stored gzipped

# ---------------------------------------------------------------------------------------------
# Model shapes (public HF configs).  max_seq is the KV-cache length the lowering sizes the caches
# with (HF max_position_embeddings); for the real models we use 4096 (see README).
# ---------------------------------------------------------------------------------------------
MODELS = {
    "toy": dict(label="toy", hidden=64, heads=4, kv=2, inter=128, vocab=256, layers=2,
                max_seq=64, theta=10000.0, eps=1e-5),
    "l1b": dict(label="Llama-3.2-1B", hidden=2048, heads=32, kv=8, inter=8192, vocab=128256,
                layers=16, max_seq=4096, theta=500000.0, eps=1e-5),
    "l8b": dict(label="Llama-3-8B", hidden=4096, heads=32, kv=8, inter=14336, vocab=128256,
                layers=32, max_seq=4096, theta=500000.0, eps=1e-5),
    "l70b": dict(label="Llama-3-70B", hidden=8192, heads=64, kv=8, inter=28672, vocab=128256,
                 layers=80, max_seq=4096, theta=500000.0, eps=1e-5),
}


def _spec(name, model, pos, *, B=1, n_tile=None, npart=None, quant=None, tied=False,
          expect_combine=False):
    return dict(name=name, model=model, pos=pos, B=B, n_tile=n_tile, npart=npart, quant=quant,
                tied=tied, expect_combine=expect_combine)


# quant = (bits, group, symmetric)
PROGRAMS = [
    # --- toy: default tiling at several positions, explicit N_tile ---
    _spec("toy_p0", "toy", 0),
    _spec("toy_p5", "toy", 5),
    _spec("toy_p63", "toy", 63),
    _spec("toy_nt32_p7", "toy", 7, n_tile=32),
    _spec("toy_nt48_p7", "toy", 7, n_tile=48),      # ragged: tiles of 48 + 16 columns
    # --- Llama-3.2-1B: tile-width sweep at pos 0 and pos 100 ---
    *[_spec(f"l1b_{'default' if nt is None else f'nt{nt}'}_p{pos}", "l1b", pos, n_tile=nt)
      for pos in (0, 100) for nt in (None, 32, 64, 256)],
    # --- Llama-3-8B / 70B ---
    _spec("l8b_default_p17", "l8b", 17),
    _spec("l8b_nt64_p17", "l8b", 17, n_tile=64),
    _spec("l70b_default_p17", "l70b", 17),
    # --- split-KV (flash-decoding: ATTENTION_TILE shards pinned to SMs + ATTENTION_COMBINE) ---
    *[_spec(f"toy_split{P}_p{pos}", "toy", pos, npart=P, expect_combine=True)
      for pos in (40, 63) for P in (4, 8)],
    *[_spec(f"l1b_split{P}_p{pos}", "l1b", pos, npart=P, expect_combine=True)
      for pos in (100, 1000) for P in (4, 8)],
    # --- batched decode (GEMM_TILE, rank-4 KV caches) ---
    _spec("toy_b2_p9", "toy", 9, B=2),
    _spec("toy_b4_p9", "toy", 9, B=4),
    _spec("l1b_b2_p9", "l1b", 9, B=2),
    _spec("l1b_b4_p9", "l1b", 9, B=4),
    # --- weight-only quantized GEMV (dequant-fused GEMV_TILE: qW + scales [+ zeros]) ---
    _spec("toy_int8sym_p5", "toy", 5, quant=(8, 32, True)),
    _spec("toy_int8asym_p5", "toy", 5, quant=(8, 32, False)),
    _spec("toy_int4sym_p5", "toy", 5, quant=(4, 32, True)),
    _spec("toy_int4asym_p5", "toy", 5, quant=(4, 32, False)),
    _spec("l1b_int8sym_p100", "l1b", 100, quant=(8, 128, True)),
    _spec("l1b_int8asym_p100", "l1b", 100, quant=(8, 128, False)),
    # --- tied embeddings (the real Llama-3.2-1B has tie_word_embeddings=True): lm_head GEMV reads
    #     the same WEIGHT buffer as EMBED; with quant the tied table stays fp (not quantized) ---
    _spec("l1b_tied_p0", "l1b", 0, tied=True),
    _spec("l1b_tied_int8sym_p100", "l1b", 100, tied=True, quant=(8, 128, True)),
]

# Projection roles AMK's quantizer treats as Linear weights (schedule.quantize default roles).
QUANT_ROLES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                         "down_proj", "lm_head"})


class LlamaForCausalLM:
    """Config-only stand-in for a HuggingFace model (no state_dict, so from_hf skips the key
    check).  Named like the HF class so AMK records meta.model == 'LlamaForCausalLM' exactly as
    it does for a real checkpoint."""

    def __init__(self, config):
        self.config = config


class QuantMetaShim:
    """Duck-typed stand-in for schedule.quantize.QuantMeta (that module imports torch).  Holds
    what quantize_weights() would record for each quantized projection: N, K, n_groups,
    packed/scales shapes and has_zeros.  Key selection follows AMK's rule: graph weights whose
    role is a projection role, 2-D, and not also read by a non-linear node (tied embedding)."""

    def __init__(self, graph, bits, group, symmetric):
        assert bits in (4, 8)
        self.bits, self.group, self.symmetric = bits, group, symmetric
        excluded = {wk for n in graph.nodes if n.op != "linear" for wk in (n.weights or [])}
        self.keys = {}
        for key, w in graph.weights.items():
            if w.role in QUANT_ROLES and len(w.shape) == 2 and key not in excluded:
                N, K = int(w.shape[0]), int(w.shape[1])
                ng = (K + group - 1) // group
                packed = [N, K] if bits == 8 else [N, (K + 1) // 2]
                self.keys[key] = {"N": N, "K": K, "n_groups": ng, "packed_shape": packed,
                                  "scales_shape": [N, ng], "has_zeros": not symmetric}

    @property
    def qdtype_name(self):
        return "I4" if self.bits == 4 else "I8"

    def is_quantized(self, key):
        return key in self.keys

    def to_dict(self):
        return {"group": self.group, "bits": self.bits, "symmetric": self.symmetric,
                "keys": self.keys}


def amk_commit(amk_dir, override):
    if override:
        return override
    try:
        r = subprocess.run(["git", "-C", amk_dir, "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=30)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def build(amk, spec):
    graph_mod, lower_mod, ir = amk
    m = MODELS[spec["model"]]
    cfg = types.SimpleNamespace(
        hidden_size=m["hidden"], num_attention_heads=m["heads"], num_key_value_heads=m["kv"],
        intermediate_size=m["inter"], vocab_size=m["vocab"], num_hidden_layers=m["layers"],
        rms_norm_eps=m["eps"], rope_theta=m["theta"], max_position_embeddings=m["max_seq"],
        tie_word_embeddings=spec["tied"], rope_scaling=None)
    g = graph_mod.from_hf(LlamaForCausalLM(cfg))
    tiling = {}
    if spec["n_tile"] is not None:
        tiling["gemv"] = {"N_tile": spec["n_tile"]}
    if spec["npart"] is not None:
        tiling["attention"] = {"n_partitions": spec["npart"]}
    config = ir.ScheduleConfig(tiling=tiling) if tiling else None
    quant = None
    if spec["quant"] is not None:
        bits, group, sym = spec["quant"]
        quant = QuantMetaShim(g, bits, group, sym)
    return lower_mod.lower(g, target=ir.TARGETS["h100"], config=config, pos=spec["pos"],
                           B=spec["B"], quant=quant)


def gz_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--amk", required=True, help="AutoMegaKernel checkout (contains schedule/)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--commit", help="AMK commit to record (default: git rev-parse in --amk)")
    ap.add_argument("--only", help="comma-separated program names to (re)generate")
    ap.add_argument("--gzip-threshold", type=int, default=GZIP_THRESHOLD)
    args = ap.parse_args(argv)

    amk_dir = os.path.abspath(args.amk)
    if not os.path.isfile(os.path.join(amk_dir, "schedule", "lower.py")):
        sys.exit(f"error: {amk_dir} is not an AutoMegaKernel checkout "
                 f"(no schedule/lower.py); pass --amk /path/to/AutoMegaKernel")
    sys.path.insert(0, amk_dir)
    from schedule import graph as graph_mod, ir, lower as lower_mod  # noqa: E402
    if not hasattr(ir, "_PROVENANCE_MAX_TASKS"):
        sys.exit("error: schedule.ir._PROVENANCE_MAX_TASKS not found; this AMK version differs "
                 "from the one the corpus was built for (cannot lift the race-check cap)")
    # Lift the task-count cap so AMK runs its full RAW/WAW race proof on every program.
    ir._PROVENANCE_MAX_TASKS = 10 ** 12
    commit = amk_commit(amk_dir, args.commit)

    specs = PROGRAMS
    if args.only:
        want = set(args.only.split(","))
        unknown = want - {s["name"] for s in specs}
        if unknown:
            sys.exit(f"error: unknown program(s): {sorted(unknown)}")
        specs = [s for s in specs if s["name"] in want]

    os.makedirs(args.out, exist_ok=True)
    cols = ["name", "file", "model", "hidden", "layers", "heads", "kv_heads", "head_dim",
            "inter", "vocab", "max_seq", "pos", "B", "N_tile", "n_partitions", "quant", "tasks",
            "buffers", "counters", "amk_validate_ok", "sha256", "attn_shards", "tied",
            "file_bytes", "amk_commit"]
    rows, refused = [], []
    for spec in specs:
        t0 = time.time()
        prog = build((graph_mod, lower_mod, ir), spec)
        res = ir.validate(prog)
        data = prog.to_json().encode("utf-8")      # exactly what MegakernelProgram.save writes
        sha = hashlib.sha256(data).hexdigest()
        n_tiles_attn = sum(1 for t in prog.tasks if t.op.name == "ATTENTION_TILE")
        n_comb = sum(1 for t in prog.tasks if t.op.name == "ATTENTION_COMBINE")
        m = MODELS[spec["model"]]
        shards = n_tiles_attn // m["layers"]
        if spec["expect_combine"] and (n_comb != m["layers"] or shards < 2):
            sys.exit(f"error: {spec['name']}: expected split-KV (ATTENTION_COMBINE per layer) but "
                     f"lowering produced {n_comb} combines, {n_tiles_attn} attention tiles")
        for stale in (spec["name"] + ".json", spec["name"] + ".json.gz"):
            p = os.path.join(args.out, stale)
            if os.path.exists(p):
                os.remove(p)
        if len(data) > args.gzip_threshold:
            fname, blob = spec["name"] + ".json.gz", gz_bytes(data)
        else:
            fname, blob = spec["name"] + ".json", data
        with open(os.path.join(args.out, fname), "wb") as f:
            f.write(blob)
        if not res.ok:
            refused.append((spec["name"], res.errors[:5]))
        q = spec["quant"]
        qs = "none" if q is None else f"int{q[0]}-{'sym' if q[2] else 'asym'}-g{q[1]}"
        rows.append({
            "name": spec["name"], "file": fname, "model": m["label"], "hidden": m["hidden"],
            "layers": m["layers"], "heads": m["heads"], "kv_heads": m["kv"],
            "head_dim": m["hidden"] // m["heads"], "inter": m["inter"], "vocab": m["vocab"],
            "max_seq": m["max_seq"], "pos": spec["pos"], "B": spec["B"],
            "N_tile": "default" if spec["n_tile"] is None else spec["n_tile"],
            "n_partitions": "default" if spec["npart"] is None else spec["npart"],
            "quant": qs, "tasks": len(prog.tasks), "buffers": len(prog.buffers),
            "counters": len(prog.counters), "amk_validate_ok": "true" if res.ok else "false",
            "sha256": sha, "attn_shards": shards, "tied": "true" if spec["tied"] else "false",
            "file_bytes": len(blob), "amk_commit": commit,
        })
        print(f"{spec['name']:24s} tasks={len(prog.tasks):6d} valid={res.ok} "
              f"file={fname} ({len(blob)} B, json {len(data)} B) {time.time() - t0:.1f}s",
              flush=True)

    manifest = os.path.join(args.out, "MANIFEST.tsv")
    if args.only and os.path.exists(manifest):        # merge into the existing manifest
        with open(manifest, encoding="utf-8") as f:
            lines = f.read().splitlines()
        old = {ln.split("\t")[0]: dict(zip(cols, ln.split("\t"))) for ln in lines[1:] if ln}
        old.update({r["name"]: r for r in rows})
        order = [s["name"] for s in PROGRAMS]
        rows = [old[n] for n in order if n in old]
    with open(manifest, "w", encoding="utf-8") as f:
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(str(r[c]) for c in cols) + "\n")
    if refused:
        print("\nPrograms REFUSED by AMK's own ir.validate (written, flagged false in MANIFEST):",
              file=sys.stderr)
        for name, errs in refused:
            print(f"  {name}: " + " | ".join(errs), file=sys.stderr)
    print(f"\n{len(rows)} programs in {manifest}; AMK commit {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
