#!/usr/bin/python3
"""
torch_compare.py - the `base` model in PyTorch (float32, CPU), as the yardstick
for `rlhf bench model`.

Measures, with the same thread count for both:
  peak    sgemm GFLOP/s of torch.mm on 2048x2048 (the ceiling MFU is relative to)
  train   one step = forward + backward + AdamW on a 16x256 batch (next-token
          loss): tokens/s and MFU, FLOPs/token = 6*N_nonemb + 12*L*T*C with
          N_nonemb = all parameters minus the token embedding (LM head included)
  gen     batched greedy generation with a KV cache (a plain torch
          implementation: prefill of the prompt, then one token per step for
          every sequence) at batch 1 and batch 32: generated tokens/s
Then, when the C binary exists, runs `rlhf bench model --preset base --json
--threads N` and prints ours/PyTorch ratios. The last line of output is one JSON
object with everything.

What it is not: not a test (nothing fails on a slow number), and not HF
transformers (same architecture, written with plain torch ops, so no
download and no extra package).

Run with Debian's Python, which has python3-torch:
    /usr/bin/python3 bench/torch_compare.py [--threads 2] [--steps 3] [--quick] [--rlhf build/rlhf]
Thread settings (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS,
OMP_WAIT_POLICY=passive) must be in the environment before torch is imported,
so the script re-executes itself once with them set.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

BASE = dict(vocab_size=264, dim=384, n_layers=8, n_heads=6, n_kv_heads=6, hidden_dim=1024,
            max_seq_len=256, norm_eps=1e-5, rope_theta=10000.0, tied_embeddings=0)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for torch and for rlhf (default 2)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 3, quick 1)")
    p.add_argument("--quick", action="store_true", help="small numbers for a smoke run")
    p.add_argument("--rlhf", default="./build/rlhf", help="path of the rlhf binary (default ./build/rlhf)")
    p.add_argument("--no-c", action="store_true", help="do not run the C benchmark")
    return p.parse_args()


def reexec_with_thread_env(threads):
    """Thread pools read their settings once, at import: set them, then restart."""
    want = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "passive"}
    if os.environ.get("RLHF_TORCH_COMPARE_CHILD") == "1":
        return
    env = dict(os.environ)
    env.update(want)
    env["RLHF_TORCH_COMPARE_CHILD"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


ARGS = parse_args()
reexec_with_thread_env(ARGS.threads)

import torch  # noqa: E402  (after the thread environment is in place)
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)


# ---- the model (float32, same semantics as common/model.h) ----

class Llama(torch.nn.Module):
    def __init__(self, cfg, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        V, C, L, H = cfg["vocab_size"], cfg["dim"], cfg["n_layers"], cfg["hidden_dim"]
        self.cfg = cfg
        self.NH, self.KVH = cfg["n_heads"], cfg["n_kv_heads"]
        self.HS = C // self.NH
        KC = self.KVH * self.HS

        def mat(*shape, std=0.02):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) * std)

        res = 0.02 / math.sqrt(2 * L)
        self.emb = mat(V, C)
        self.layers = torch.nn.ModuleList()
        for _ in range(L):
            m = torch.nn.Module()
            m.attn_norm = torch.nn.Parameter(torch.ones(C))
            m.wq, m.wk, m.wv, m.wo = mat(C, C), mat(KC, C), mat(KC, C), mat(C, C, std=res)
            m.ffn_norm = torch.nn.Parameter(torch.ones(C))
            m.w1, m.w3, m.w2 = mat(H, C), mat(H, C), mat(C, H, std=res)
            self.layers.append(m)
        self.norm = torch.nn.Parameter(torch.ones(C))
        self.lm_head = self.emb if cfg["tied_embeddings"] else mat(V, C)
        inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, self.HS, 2).float() / self.HS))
        ang = torch.arange(cfg["max_seq_len"]).float()[:, None] * inv_freq[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)  # (maxT, HS)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def n_params(self):
        return sum(p.numel() for p in self.parameters())

    def n_params_nonemb(self):
        return self.n_params() - self.emb.numel()

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["norm_eps"]) * w

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def rope(self, x, pos):  # x (B,heads,T,HS), pos (T) or (B,1,T,1)-broadcastable tables
        cos, sin = self.cos[pos], self.sin[pos]
        return x * cos + self.rotate_half(x) * sin

    def forward(self, tokens, cache=None, start=0):
        """tokens (B,T) -> logits (B,T,V). With cache (list of (k,v) per layer,
        each (B,KVH,maxT,HS)), keys/values are written at start..start+T-1 and
        attention covers 0..start+T-1."""
        B, T = tokens.shape
        NH, KVH, HS = self.NH, self.KVH, self.HS
        rep = NH // KVH
        pos = torch.arange(start, start + T)
        x = self.emb[tokens]
        causal = None
        if T > 1:
            causal = torch.full((T, start + T), float("-inf")).triu(start + 1)
        for li, m in enumerate(self.layers):
            n = self.rms(x, m.attn_norm)
            q = self.rope((n @ m.wq.T).view(B, T, NH, HS).transpose(1, 2), pos)
            k = self.rope((n @ m.wk.T).view(B, T, KVH, HS).transpose(1, 2), pos)
            v = (n @ m.wv.T).view(B, T, KVH, HS).transpose(1, 2)
            if cache is not None:
                kc, vc = cache[li]
                kc[:, :, start:start + T] = k
                vc[:, :, start:start + T] = v
                k, v = kc[:, :, :start + T], vc[:, :, :start + T]
            # grouped-query attention without copying: query heads grouped by kv head
            qg = q.reshape(B, KVH, rep * T, HS) if rep > 1 else q
            att = (qg @ k.transpose(-1, -2)) / math.sqrt(HS)
            if rep > 1:
                att = att.view(B, KVH, rep, T, -1)
            if causal is not None:
                att = att + causal
            y = torch.softmax(att, dim=-1)
            y = (y.view(B, KVH, rep * T, -1) @ v).view(B, NH, T, HS) if rep > 1 else y @ v
            x = x + y.transpose(1, 2).reshape(B, T, -1) @ m.wo.T
            n = self.rms(x, m.ffn_norm)
            x = x + (F.silu(n @ m.w1.T) * (n @ m.w3.T)) @ m.w2.T
        return self.rms(x, self.norm) @ self.lm_head.T


# ---- measurements ----

def measure_peak(n, reps):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def measure_train(model, B, T, steps):
    g = torch.Generator().manual_seed(1)
    V = model.cfg["vocab_size"]
    tokens = torch.randint(0, V, (B, T + 1), generator=g)
    inp, tgt = tokens[:, :-1], tokens[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(inp)
        loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up: allocations, optimizer state
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return B * T / dt, dt


@torch.inference_mode()
def measure_gen(model, B, prompt_len, new_tokens):
    """Greedy generation, KV cache; returns generated tokens/s over prefill + decode."""
    cfg = model.cfg
    L, KVH, HS = cfg["n_layers"], model.KVH, model.HS
    maxT = prompt_len + new_tokens
    assert maxT <= cfg["max_seq_len"]
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, cfg["vocab_size"], (B, prompt_len), generator=g)

    def run():
        cache = [(torch.empty(B, KVH, maxT, HS), torch.empty(B, KVH, maxT, HS)) for _ in range(L)]
        logits = model(prompt, cache, 0)
        tok = logits[:, -1].argmax(-1, keepdim=True)
        for p in range(prompt_len, maxT - 1):
            tok = model(tok, cache, p)[:, -1].argmax(-1, keepdim=True)

    # warm-up at a small size (allocator, thread pool), then the timed run
    model(prompt[:, :4], [(torch.empty(B, KVH, 8, HS), torch.empty(B, KVH, 8, HS)) for _ in range(L)], 0)
    t0 = time.perf_counter()
    run()
    dt = time.perf_counter() - t0
    return B * new_tokens / dt, dt


# ---- the C side ----


def last_json_object(text):
    """The last top-level {...} in text that parses as JSON."""
    for m in reversed(list(re.finditer(r"^\{.*?^\}|^\{.*\}$", text, re.S | re.M))):
        try:
            return json.loads(m.group(0))
        except ValueError:
            continue
    try:
        return json.loads(text)
    except ValueError:
        return None


# The figures of `rlhf bench model --json` this script compares against.
GEN_NEW = 128  # new tokens per sequence in the generation timings (both sides)

C_KEYS = {
    "train_tokens_per_s": "train_tokens_per_s",
    "gen_b32_tokens_per_s": "gen_tokens_per_s_batch32",
    "gen_b1_tokens_per_s": "gen_tokens_per_s_batch1",
}


def run_c(path, threads, quick):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        print("C binary %s not found: PyTorch figures only" % path)
        return None
    cmd = [path, "bench", "model", "--preset", "base", "--json", "--threads", str(threads),
           "--gen-tokens", str(16 if quick else GEN_NEW)]
    if quick:
        cmd += ["--batch", "2", "--seq", "64", "--steps", "1"]
    print("running: " + " ".join(cmd), flush=True)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        print("C benchmark timed out")
        return None
    if r.returncode != 0:
        print("C benchmark failed (exit %d): %s" % (r.returncode, (r.stderr or r.stdout).strip()[-500:]))
        return None
    obj = last_json_object(r.stdout)
    if obj is None:
        print("C benchmark printed no JSON object:\n" + r.stdout[-1000:])
        return None
    found = {}
    for name, key in C_KEYS.items():
        found[name] = obj.get(key)
        found[name + "_key"] = key
    if any(found[n] is None for n in C_KEYS):
        print("note: the C JSON lacks some figures; keys were: " + ", ".join(sorted(obj)))
    found["raw"] = obj
    return found


def main():
    a = ARGS
    quick = a.quick
    steps = a.steps if a.steps is not None else (1 if quick else 3)
    B, T = (2, 64) if quick else (16, 256)
    gen_prompt = 16  # same prompt length and new tokens as `rlhf bench model`
    gen_new_b1 = gen_new_b32 = 16 if quick else GEN_NEW
    peak_n = 1024 if quick else 2048

    torch.manual_seed(0)
    model = Llama(BASE)
    n, n_ne = model.n_params(), model.n_params_nonemb()
    C, L = BASE["dim"], BASE["n_layers"]
    flops_tok = 6 * n_ne + 12 * L * T * C
    print("torch %s, %d threads (OMP_WAIT_POLICY=%s); base model: %.2fM params, %.2fM non-embedding" % (
        torch.__version__, torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY"), n / 1e6, n_ne / 1e6))

    peak = measure_peak(peak_n, 5 if quick else 7)
    print("peak   sgemm %dx%d: %.1f GFLOP/s" % (peak_n, peak_n, peak), flush=True)

    train_tps, step_s = measure_train(model, B, T, steps)
    mfu = train_tps * flops_tok / (peak * 1e9)
    print("train  %dx%d fwd+bwd+AdamW: %.3f s/step, %.0f tokens/s, %.1f GFLOP/s, MFU %.1f%% (%.1fM FLOPs/token)" % (
        B, T, step_s, train_tps, train_tps * flops_tok / 1e9, 100 * mfu, flops_tok / 1e6), flush=True)

    gen = {}
    for gb, new in ((1, gen_new_b1), (32, gen_new_b32)):
        tps, dt = measure_gen(model, gb, gen_prompt, new)
        gen[gb] = tps
        print("gen    batch %2d, prompt %d + %d new: %.0f tokens/s (%.2f s)" % (gb, gen_prompt, new, tps, dt),
              flush=True)

    result = {
        "torch": {
            "version": torch.__version__, "threads": torch.get_num_threads(),
            "peak_gflops": round(peak, 2),
            "train": {"batch": B, "seq": T, "steps": steps, "step_s": round(step_s, 4),
                      "tokens_per_s": round(train_tps, 1), "mfu": round(mfu, 4),
                      "flops_per_token": flops_tok},
            "gen_b1_tokens_per_s": round(gen[1], 1),
            "gen_b32_tokens_per_s": round(gen[32], 1),
        },
        "params": n, "params_nonemb": n_ne, "quick": quick,
    }

    c = None if a.no_c else run_c(a.rlhf, a.threads, quick)
    if c is not None:
        ours = {"train_tokens_per_s": c["train_tokens_per_s"], "gen_b32_tokens_per_s": c["gen_b32_tokens_per_s"],
                "gen_b1_tokens_per_s": c["gen_b1_tokens_per_s"]}
        theirs = {"train_tokens_per_s": train_tps, "gen_b32_tokens_per_s": gen[32], "gen_b1_tokens_per_s": gen[1]}
        ratios = {}
        for k in ours:
            if ours[k] is not None and theirs[k] > 0:
                ratios[k] = round(ours[k] / theirs[k], 3)
                print("ours/PyTorch %-22s %10.1f / %10.1f = %.2fx  (C key %s)" % (
                    k, ours[k], theirs[k], ratios[k], c[k + "_key"]))
        result["rlhf"] = c["raw"]
        result["ratio_ours_over_torch"] = ratios
        if quick:
            result["note"] = "quick run: torch used smaller shapes than the C benchmark; ratios are not comparable"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
