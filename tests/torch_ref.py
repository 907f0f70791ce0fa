#!/usr/bin/python3
"""
torch_ref.py - reference dumps for tests/test_parity.c.

Builds the Llama-style decoder of common/model.h in float64 PyTorch with
plain torch ops that mirror Hugging Face LlamaForCausalLM (RMSNorm,
rotate_half RoPE, grouped-query attention, SwiGLU, tied or untied LM head)
plus the optional (1,C) scalar head, runs one batch forward and backward, and
writes the weights, inputs, outputs and parameter gradients to
tests/fixtures/*.safetensors.

What it deliberately is not: it does not import `transformers` or
`safetensors` (the files are written with struct + json), and it is not run by
ctest: the fixtures are committed, so the C test suite never needs Python.

Regenerate (deterministic, seeded) with Debian's Python, which has
python3-torch:

    /usr/bin/python3 tests/torch_ref.py

Fixtures:
  parity_tiny.safetensors       tiny preset, untied LM head, scalar head, temperature 1.0
  parity_tiny_tied.safetensors  tiny preset, tied embeddings, no scalar head, temperature 0.7

Each file holds
  <hf name>                 every parameter, F32 (the weights C starts from)
  input.tokens, input.targets   I32 (B,T); targets -1 = skip (padding, some prompt positions)
  input.c1, input.c2, input.c3  F32 (B,T) loss coefficients (c1, c2 zero where skipped)
  expect.logits             F32 (B,T,V) before temperature
  expect.logprobs, expect.entropy, expect.values   F32 (B,T)
  expect.loss               F32 (1)   L = sum c1*logprobs + c2*entropy + c3*values
  grad.<hf name>            F32 dL/dparam
and __metadata__ with the model config, temperature, B, T and the seed.

The reference is computed in float64 from the float32-rounded weights, so the
only difference left for C is its own float32 arithmetic.
"""
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

TINY = dict(vocab_size=264, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, hidden_dim=256,
            max_seq_len=128, norm_eps=1e-5, rope_theta=10000.0)


# ---- safetensors writer (plain struct + json) ----

_DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.float64: "F64", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor); data contiguous in that order."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs = []
    off = 0
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        b = t.numpy().tobytes()  # native order; we check little-endian below
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---- the model (float64, HF semantics) ----

def param_shapes(cfg):
    """(hf name, shape) in model.h blob order (MP_* enum), layers interleaved by name."""
    V, C, L, H = cfg["vocab_size"], cfg["dim"], cfg["n_layers"], cfg["hidden_dim"]
    HS = C // cfg["n_heads"]
    KC = cfg["n_kv_heads"] * HS
    out = [("model.embed_tokens.weight", (V, C))]
    for l in range(L):
        p = "model.layers.%d." % l
        out += [(p + "input_layernorm.weight", (C,)),
                (p + "self_attn.q_proj.weight", (C, C)),
                (p + "self_attn.k_proj.weight", (KC, C)),
                (p + "self_attn.v_proj.weight", (KC, C)),
                (p + "self_attn.o_proj.weight", (C, C)),
                (p + "post_attention_layernorm.weight", (C,)),
                (p + "mlp.gate_proj.weight", (H, C)),
                (p + "mlp.up_proj.weight", (H, C)),
                (p + "mlp.down_proj.weight", (C, H))]
    out.append(("model.norm.weight", (C,)))
    if not cfg["tied_embeddings"]:
        out.append(("lm_head.weight", (V, C)))
    if cfg["scalar_head"]:
        out.append(("score.weight", (1, C)))
    return out


def init_params(cfg, gen):
    """Matrices N(0, 0.1), norm gains 1 + 0.1 N(0,1); rounded to float32, held in float64."""
    params = {}
    for name, shape in param_shapes(cfg):
        r = torch.randn(shape, generator=gen, dtype=torch.float64)
        w = 1.0 + 0.1 * r if len(shape) == 1 else 0.1 * r
        params[name] = w.float().double().requires_grad_(True)
    return params


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(T, HS, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))  # (HS/2)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, HS/2)
    emb = torch.cat((ang, ang), dim=-1)  # (T, HS)
    return emb.cos(), emb.sin()


def forward(cfg, P, tokens, targets, temperature):
    """tokens, targets (B,T) long -> logits (B,T,V), logprobs, entropy, values (B,T)."""
    B, T = tokens.shape
    C, NH, KVH = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    HS = C // NH
    eps = cfg["norm_eps"]
    cos, sin = rope_cos_sin(T, HS, cfg["rope_theta"])
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)

    x = P["model.embed_tokens.weight"][tokens]  # (B,T,C)
    for l in range(cfg["n_layers"]):
        p = "model.layers.%d." % l
        n = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        q = (n @ P[p + "self_attn.q_proj.weight"].T).view(B, T, NH, HS).transpose(1, 2)
        k = (n @ P[p + "self_attn.k_proj.weight"].T).view(B, T, KVH, HS).transpose(1, 2)
        v = (n @ P[p + "self_attn.v_proj.weight"].T).view(B, T, KVH, HS).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = NH // KVH  # query head h uses kv head h // rep (HF repeat_kv)
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / (HS ** 0.5) + mask
        y = torch.softmax(att, dim=-1) @ v  # (B,NH,T,HS)
        y = y.transpose(1, 2).reshape(B, T, C)
        h = x + y @ P[p + "self_attn.o_proj.weight"].T
        n = rmsnorm(h, P[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(n @ P[p + "mlp.gate_proj.weight"].T)
        u = n @ P[p + "mlp.up_proj.weight"].T
        x = h + (g * u) @ P[p + "mlp.down_proj.weight"].T
    xf = rmsnorm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tied_embeddings"] else P["lm_head.weight"]
    logits = xf @ head.T  # (B,T,V)
    logp_all = torch.log_softmax(logits / temperature, dim=-1)
    keep = targets >= 0
    tgt = targets.clamp(min=0)
    logprobs = logp_all.gather(-1, tgt[..., None])[..., 0] * keep
    entropy = -(logp_all.exp() * logp_all).sum(-1) * keep
    if cfg["scalar_head"]:
        values = (xf @ P["score.weight"].T)[..., 0]
    else:
        values = torch.zeros(B, T, dtype=torch.float64)
    return logits, logprobs, entropy, values


def make_batch(cfg, gen, lengths, T):
    """Right-padded tokens (pad 0) and next-token targets; -1 on padding, on the
    last real position (except for a full-length row, scored with a random
    token so position T-1 is covered) and on the first 2 prompt positions."""
    V = cfg["vocab_size"]
    B = len(lengths)
    tokens = torch.zeros(B, T, dtype=torch.long)
    targets = torch.full((B, T), -1, dtype=torch.long)
    for b, n in enumerate(lengths):
        seq = torch.randint(0, V, (n + 1,), generator=gen)
        tokens[b, :n] = seq[:n]
        targets[b, :n] = seq[1:]
        targets[b, :2] = -1
        if n < T:
            targets[b, n - 1] = -1
    return tokens, targets


def build_fixture(path, cfg, seed, lengths, T, temperature):
    gen = torch.Generator().manual_seed(seed)
    P = init_params(cfg, gen)
    B = len(lengths)
    tokens, targets = make_batch(cfg, gen, lengths, T)
    keep = (targets >= 0).double()
    c1 = (torch.randn(B, T, generator=gen, dtype=torch.float64) * keep).float().double()
    c2 = (torch.randn(B, T, generator=gen, dtype=torch.float64) * keep).float().double()
    c3 = torch.randn(B, T, generator=gen, dtype=torch.float64).float().double()
    if not cfg["scalar_head"]:
        c3.zero_()

    logits, logprobs, entropy, values = forward(cfg, P, tokens, targets, temperature)
    loss = (c1 * logprobs).sum() + (c2 * entropy).sum() + (c3 * values).sum()
    loss.backward()

    names = [n for n, _ in param_shapes(cfg)]
    out = [(n, P[n].detach().float()) for n in names]
    out += [("input.tokens", tokens.int()), ("input.targets", targets.int()),
            ("input.c1", c1.float()), ("input.c2", c2.float()), ("input.c3", c3.float()),
            ("expect.logits", logits.detach().float()),
            ("expect.logprobs", logprobs.detach().float()),
            ("expect.entropy", entropy.detach().float()),
            ("expect.values", values.detach().float()),
            ("expect.loss", loss.detach().float().reshape(1))]
    out += [("grad." + n, P[n].grad.float()) for n in names]

    meta = dict(cfg)
    meta.update(temperature=temperature, B=B, T=T, seed=seed,
                generator="tests/torch_ref.py (float64 torch %s)" % torch.__version__)
    write_safetensors(path, out, meta)
    print("%s: %d tensors, %.2f MB, loss %.6f, logits |max| %.3f, values |max| %.3f" % (
        os.path.relpath(path), len(out), os.path.getsize(path) / 1e6, loss.item(),
        logits.abs().max().item(), values.abs().max().item()))


def main():
    if sys.byteorder != "little":
        sys.exit("torch_ref.py writes native-order bytes; run it on a little-endian machine")
    torch.set_num_threads(1)
    os.makedirs(FIXTURES, exist_ok=True)
    untied = dict(TINY, tied_embeddings=0, scalar_head=1)
    tied = dict(TINY, tied_embeddings=1, scalar_head=0)
    build_fixture(os.path.join(FIXTURES, "parity_tiny.safetensors"), untied, seed=1234,
                  lengths=[17, 11, 5], T=17, temperature=1.0)
    build_fixture(os.path.join(FIXTURES, "parity_tiny_tied.safetensors"), tied, seed=4321,
                  lengths=[9, 17, 4], T=17, temperature=0.7)


if __name__ == "__main__":
    main()
