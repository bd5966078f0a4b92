#!/usr/bin/env python3
"""make_fixture.py - builds the tiny Hugging Face Llama fixtures the reference VM is checked
against.

For each fixture it builds a LlamaForCausalLM with random weights from a fixed seed, saves
config.json and model.safetensors with save_pretrained, and writes golden.json: the logits at
every fed position and the greedy tokens for a fixed prompt. Goldens are computed in float64 on
the CPU from the saved weights (bf16 weights are upcast), so they are the exact forward of the
file that is committed; HF's own cached generate() must produce the same greedy tokens.

A seed is accepted only when every greedy step has a clear winner (top-1 minus top-2 logit at
least MIN_GAP), so an fp32 forward cannot pick a different token by rounding. The seed actually
used is recorded in golden.json.

Needs torch and transformers (not the CPU build machine). Usage:
    python3 tools/make_fixture.py --out DIR [--steps 128]
"""
import argparse
import copy
import json
import os

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

MIN_GAP = 1e-3

BASE = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, vocab_size=256,
            max_position_embeddings=192, rms_norm_eps=1e-5, rope_theta=10000.0,
            attention_bias=False, mlp_bias=False, hidden_act="silu",
            bos_token_id=1, eos_token_id=2, pad_token_id=None)

FIXTURES = {
    # GQA 2:1, untied, float32 weights.
    "llama_gqa2_f32": dict(cfg=dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                    tie_word_embeddings=False),
                           dtype=torch.float32, seed=1000, prompt=[1, 17, 42, 99]),
    # GQA 4:1 with tied embeddings (no lm_head.weight in the file), float32 weights.
    "llama_gqa4_tied_f32": dict(cfg=dict(num_attention_heads=8, num_key_value_heads=2,
                                         head_dim=8, tie_word_embeddings=True,
                                         rms_norm_eps=1e-6, rope_theta=500000.0),
                                dtype=torch.float32, seed=2000, prompt=[5, 250, 7]),
    # GQA 2:1, bf16 weights, llama3 rope scaling with all three frequency bands in use.
    "llama_gqa2_bf16_rope3": dict(cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                           head_dim=16, tie_word_embeddings=False,
                                           rope_theta=500000.0,
                                           rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                         "low_freq_factor": 1.0,
                                                         "high_freq_factor": 4.0,
                                                         "original_max_position_embeddings": 64}),
                                  dtype=torch.bfloat16, seed=3000, prompt=[1, 2, 3, 200, 201]),
}


def add_legacy_rope_keys(path):
    """transformers 5 writes rope settings only under "rope_parameters"; Llama checkpoints on the
    Hub (and transformers 4) use top-level "rope_theta" and "rope_scaling". Write both so the
    config reads the same in either form."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.get("rope_parameters")
    if isinstance(rp, dict):
        cfg.setdefault("rope_theta", rp.get("rope_theta"))
        if rp.get("rope_type", "default") != "default":
            cfg.setdefault("rope_scaling", {k: v for k, v in rp.items() if k != "rope_theta"})
        else:
            cfg.setdefault("rope_scaling", None)
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def build(spec, seed):
    """A float32 model whose weights make the forward non-trivial: projections with std
    1/sqrt(K) so activations stay O(1), norm weights 1 + noise so a missing norm weight is
    visible. Parameters are rounded to the fixture's dtype but kept in float32, and buffers (the
    rotary inv_freq) stay float32: casting the whole module to bf16 would round inv_freq too,
    which is an artifact of HF's module casting, not part of the model."""
    cfg = dict(BASE)
    cfg.update(spec["cfg"])
    config = LlamaConfig(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name:
                v = torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / (p.shape[1] ** 0.5)
            p.copy_(v.to(spec["dtype"]).to(torch.float32))
    model.eval()
    return model


def greedy_goldens(model, prompt, steps):
    """Logits (float64) at every fed position and the greedy tokens, recomputing the whole
    sequence each step (no cache), plus the smallest top-1/top-2 gap on the greedy path."""
    m64 = copy.deepcopy(model).to(torch.float64)
    tokens = list(prompt)
    out = []
    gap = float("inf")
    with torch.no_grad():
        for _ in range(steps):
            logits = m64(torch.tensor([tokens])).logits[0, -1]
            top = torch.topk(logits, 2).values
            gap = min(gap, float(top[0] - top[1]))
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            tokens.append(nxt)
        fed = tokens[:-1]
        all_logits = m64(torch.tensor([fed])).logits[0]
    return out, all_logits, gap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, spec in FIXTURES.items():
        if args.only and name != args.only:
            continue
        for seed in range(spec["seed"], spec["seed"] + 100):
            model = build(spec, seed)
            # Goldens come from the weights as saved (bf16 rounding included).
            tokens, logits, gap = greedy_goldens(model, spec["prompt"], args.steps)
            if gap >= MIN_GAP:
                break
        else:
            raise SystemExit("%s: no seed with a top-2 gap >= %g" % (name, MIN_GAP))
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        copy.deepcopy(model).to(spec["dtype"]).save_pretrained(d, safe_serialization=True)
        add_legacy_rope_keys(os.path.join(d, "config.json"))
        for extra in ("generation_config.json",):
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
        # HF's own cached decode in float32 must agree with the float64 greedy path.
        m32 = model
        with torch.no_grad():
            gen = m32.generate(torch.tensor([spec["prompt"]]), max_new_tokens=args.steps,
                               min_new_tokens=args.steps, do_sample=False, use_cache=True,
                               eos_token_id=None, pad_token_id=0)
        gen_tokens = gen[0, len(spec["prompt"]):].tolist()
        if gen_tokens != tokens:
            raise SystemExit("%s: HF generate() disagrees with the float64 greedy path" % name)
        golden = {
            "fixture": name,
            "seed": seed,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "weights_dtype": {torch.float32: "F32", torch.bfloat16: "BF16"}[spec["dtype"]],
            "golden_precision": "float64",
            "prompt": spec["prompt"],
            "steps": args.steps,
            "tokens": tokens,
            "hf_generate_fp32_agrees": gen_tokens == tokens,
            "min_top2_gap": gap,
            "max_abs_logit": float(logits.abs().max()),
            "n_positions": int(logits.shape[0]),
            "vocab": int(logits.shape[1]),
        }
        rows = ["[" + ",".join("%.7g" % v for v in row.tolist()) + "]" for row in logits]
        text = json.dumps(golden, indent=1)
        text = text[:-2] + ',\n "logits": [\n' + ",\n".join(rows) + "\n ]\n}\n"
        json.loads(text)
        with open(os.path.join(d, "golden.json"), "w") as f:
            f.write(text)
        print(name, "seed", seed, "gap %.4g" % gap, "generate agrees", gen_tokens == tokens,
              "tokens", tokens[:12])


if __name__ == "__main__":
    main()
