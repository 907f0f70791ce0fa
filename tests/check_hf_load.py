#!/usr/bin/python3
"""
check_hf_load.py - load a checkpoint folder written by checkpoint_save_model
(common/checkpoint.c) with Hugging Face transformers and print its logits.

It proves the claim of DESIGN.md that `transformers` loads our checkpoints:
every tensor name, shape and config key must be understood by
LlamaForCausalLM (a missing or misnamed tensor would be silently
re-initialised by transformers, so the script fails if any key is missing,
unexpected or mismatched; "score.weight", our scalar head, is the one
expected extra).

What it deliberately is not: not run by ctest (the C suite never needs
Python), and not a parity test of the model maths (tests/torch_ref.py and
test_parity.c do that).

Run (needs torch and transformers; Debian's python3-torch plus a venv that
sees it works):

    python3 -m venv --system-site-packages /tmp/hfvenv
    /tmp/hfvenv/bin/pip install transformers          # torch < 2.0: transformers==4.44.2
    /tmp/hfvenv/bin/python tests/check_hf_load.py CKPT_DIR [--tokens 257,72,105,33]
                                                  [--expect LOGITS.safetensors] [--tol 1e-4]

--expect compares against logits computed by the C model: a safetensors file
holding "tokens" (I32, [T]) and "logits" (F32, [T, V]); the script then uses
those tokens, prints the largest absolute difference and exits 1 if it
exceeds --tol. Exit codes: 0 ok, 1 mismatch, 2 transformers not importable.
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="checkpoint folder (config.json + model.safetensors)")
    ap.add_argument("--tokens", default="257,72,101,108,108,111,44,32,119,111,114,108,100",
                    help="comma-separated token ids (default: <|bos|>Hello, world)")
    ap.add_argument("--expect", help="safetensors with tokens (I32 [T]) and logits (F32 [T,V]) from the C model")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs logit difference allowed with --expect")
    args = ap.parse_args()

    try:
        import torch
        from transformers import LlamaForCausalLM
    except ImportError as e:
        print(f"check_hf_load: transformers/torch not importable ({e}); nothing checked", file=sys.stderr)
        return 2

    model, info = LlamaForCausalLM.from_pretrained(args.ckpt, torch_dtype=torch.float32, output_loading_info=True)
    model.eval()
    unexpected = [k for k in info["unexpected_keys"] if k != "score.weight"]
    problems = {"missing": info["missing_keys"], "unexpected": unexpected,
                "mismatched": info["mismatched_keys"], "errors": info["error_msgs"]}
    for what, keys in problems.items():
        if keys:
            print(f"check_hf_load: {what} keys: {keys}", file=sys.stderr)
    if any(problems.values()):
        return 1
    cfg = model.config
    print(f"loaded {args.ckpt}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"L={cfg.num_hidden_layers} C={cfg.hidden_size} NH={cfg.num_attention_heads} "
          f"KVH={cfg.num_key_value_heads} V={cfg.vocab_size} tied={cfg.tie_word_embeddings}")

    expect = None
    if args.expect:
        from safetensors.torch import load_file
        ref = load_file(args.expect)
        tokens = ref["tokens"].to(torch.long).tolist()
        expect = ref["logits"].to(torch.float32)
    else:
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]

    with torch.no_grad():
        logits = model(torch.tensor([tokens], dtype=torch.long)).logits[0].float()  # (T, V)
    logp = torch.log_softmax(logits.double(), dim=-1)
    print(f"tokens ({len(tokens)}): {tokens}")
    print(f"logits shape {tuple(logits.shape)}, min {logits.min().item():.6g}, max {logits.max().item():.6g}")
    for t in range(len(tokens)):
        nxt = f"  log p(next={tokens[t + 1]}) {logp[t, tokens[t + 1]].item():.6f}" if t + 1 < len(tokens) else ""
        head = ", ".join(f"{v:.5f}" for v in logits[t, :4].tolist())
        print(f"t={t:3d} argmax {int(logits[t].argmax())}{nxt}  logits[:4] [{head}]")

    if expect is not None:
        if tuple(expect.shape) != tuple(logits.shape):
            print(f"check_hf_load: shape {tuple(expect.shape)} expected, transformers gave {tuple(logits.shape)}",
                  file=sys.stderr)
            return 1
        diff = (expect - logits).abs().max().item()
        print(f"max |C - transformers| logit difference: {diff:.3g} (tol {args.tol:g})")
        if not diff <= args.tol:
            print("check_hf_load: FAILED", file=sys.stderr)
            return 1
    print("check_hf_load: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
