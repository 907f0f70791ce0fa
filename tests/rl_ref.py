#!/usr/bin/python3
"""
rl_ref.py - the float64 PyTorch reference for learner/rl.c, checked by
tests/test_rl.c.

Implements the formulas of learner/rl.h independently of the C code (GAE as
a matrix of (gamma*lambda)^k weights instead of a backward recursion, the
running moments as plain statistics of the concatenated history, the loss
gradients by torch autograd), runs them on one seeded random batch and writes
inputs and expected outputs to tests/fixtures/rl_ref.json.

What it deliberately is not: it is not run by ctest. The fixture is
committed, so the C test suite never needs Python.

Regenerate (deterministic, seeded) with Debian's Python, which has
python3-torch:

    /usr/bin/python3 tests/rl_ref.py

The batch: B = 6 rows of T = 12 positions, with completions of different
lengths and positions (one of a single token, one running to the last
position, one with a hole of non-action tokens in the middle, one with no
completion at all); new log-probs about half inside the clip band and half
far outside it (ratios <= 0.74 or >= 1.35) with advantages of both signs, so
every branch of the clipped surrogate and of the clipped value loss is taken;
and G = 3 groups of K = 4 scores for the critic-free functions (one group with
ties, one constant group).

Every input is rounded to float32 first and the reference is computed in
float64 from the rounded values, so C sees exactly the same inputs and the
only difference left is its own float32 rounding. Stages are chained through
float32 too (e.g. GAE's rewards input is the float32-rounded token rewards),
so C can feed a stage the fixture's output of the previous one.

JSON layout: {"B", "T", "G", "K", "params": {...}, "inputs": {...},
"expect": {...}}; arrays are flat row-major lists ((B,T) -> B*T numbers).
"""
import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "rl_ref.json")

SEED = 20240607
B, T = 6, 12
G, K = 3, 4
EPS_WHITEN = 1e-8

torch.set_default_dtype(torch.float64)


def f32(x):
    """Round to float32, hold in float64."""
    if isinstance(x, float):
        return float(torch.tensor(x).float().double())
    return x.detach().float().double()


# float32-rounded hyperparameters (C receives them as float)
P = dict(beta=f32(0.05), clip_eps=f32(0.2), value_clip=f32(0.2), entropy_coef=f32(0.01), kl_coef=f32(0.04),
         reward_clip=f32(1.5), grpo_eps=f32(1e-4),
         gae=[(f32(1.0), f32(0.95)), (f32(0.99), f32(0.9)), (f32(1.0), f32(1.0))],
         kl_target=f32(6.0), kl_horizon=f32(10000.0), kl_beta0=f32(0.05), kl_n_steps=64)


def make_mask():
    m = torch.zeros(B, T)
    m[0, 3:9] = 1          # prompt 3, completion 6, padding 3
    m[1, 2:12] = 1         # completion to the last position
    m[2, 5] = 1            # a single action token
    m[3, 1:4] = 1          # completion, 2 non-action tokens (a tool output), completion
    m[3, 6:10] = 1
    m[4, 4:12] = 1
    # row 5: prompt only, no completion
    return m


def inputs(gen):
    def U(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    def N(*shape):
        return torch.randn(*shape, generator=gen)

    mask = make_mask()
    logp_old = f32(-U(0.05, 4.0, B, T))
    logp_ref = f32(logp_old + 0.3 * N(B, T))
    # half the tokens inside the clip band (|log ratio| < 0.15 -> ratio in
    # [0.86, 1.17]), half far outside (|log ratio| in [0.3, 1.0])
    inside = torch.rand(B, T, generator=gen) < 0.5
    sign = torch.where(torch.rand(B, T, generator=gen) < 0.5, -1.0, 1.0)
    d = torch.where(inside, U(-0.15, 0.15, B, T), sign * U(0.3, 1.0, B, T))
    logp_new = f32(logp_old + d)
    values_old = f32(0.5 * N(B, T))
    inside_v = torch.rand(B, T, generator=gen) < 0.5
    sign_v = torch.where(torch.rand(B, T, generator=gen) < 0.5, -1.0, 1.0)
    dv = torch.where(inside_v, U(-0.15, 0.15, B, T), sign_v * U(0.3, 0.8, B, T))
    values_new = f32(values_old + dv)
    entropy = f32(U(0.3, 3.0, B, T))
    scores = f32(0.5 + N(B))
    prev_scores = f32(0.3 + 0.8 * N(10))
    g0 = N(K)
    scores_group = f32(torch.cat([g0, torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.full((K,), 0.5)]))
    return dict(mask=mask, logp_old=logp_old, logp_ref=logp_ref, logp_new=logp_new, values_old=values_old,
                values_new=values_new, entropy=entropy, scores=scores, prev_scores=prev_scores,
                scores_group=scores_group)


# ---- the formulas ----

def masked_mean(x, m):
    return (x * m).sum() / m.sum()


def whiten(x, m, shift_mean=True):
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    w = (x - mean) * torch.rsqrt(var + EPS_WHITEN)
    if not shift_mean:
        w = w + mean
    return torch.where(m > 0, w, x)


def kl_est(logp_old, logp_ref, m, est):
    lr = logp_old - logp_ref
    k = lr if est == "k1" else torch.exp(-lr) - 1 + lr
    k = k * m
    seq = k.sum(1)
    has = m.sum(1) > 0
    return k, seq, float(seq[has].mean())


def token_rewards(kl, scores, m, beta):
    r = -beta * kl * m
    for b in range(B):
        idx = m[b].nonzero().flatten()
        if len(idx):
            r[b, idx[-1]] += scores[b]
    return r


def gae(rewards, values, m, gamma, lam):
    """A = W delta on each row's compacted action tokens, W[i,j] = (gamma*lam)^(j-i) for j >= i."""
    adv, ret = torch.zeros(B, T), torch.zeros(B, T)
    for b in range(B):
        idx = m[b].nonzero().flatten()
        n = len(idx)
        if n == 0:
            continue
        r, v = rewards[b, idx], values[b, idx]
        v_next = torch.cat([v[1:], torch.zeros(1)])
        delta = r + gamma * v_next - v
        i = torch.arange(n)
        p = (i[None, :] - i[:, None]).double()
        W = torch.where(p >= 0, torch.tensor(gamma * lam) ** p.clamp(min=0), torch.zeros(()))
        a = W @ delta
        adv[b, idx], ret[b, idx] = a, a + v
    return adv, ret


def policy_loss(logp_new, logp_old, adv, m, eps):
    lp = logp_new.clone().requires_grad_(True)
    ratio = torch.exp(lp - logp_old)
    s1 = ratio * adv
    s2 = torch.clamp(ratio, 1 - eps, 1 + eps) * adv
    loss = -masked_mean(torch.min(s1, s2), m)
    loss.backward()
    with torch.no_grad():
        clipped = ((s2 < s1).double() * m)
        log_ratio = logp_new - logp_old
        stats = dict(clip_frac=float(masked_mean(clipped, m)),
                     approx_kl=float(masked_mean((ratio - 1) - log_ratio, m)),
                     ratio_mean=float(masked_mean(ratio, m)))
        # closed form of the gradient, to catch autograd tie conventions
        closed = torch.where(s2 < s1, torch.zeros(()), -ratio * adv) * m / m.sum()
        assert torch.allclose(lp.grad, closed, rtol=0, atol=1e-15), "policy gradient: autograd != closed form"
        both = lambda c: (int((c & (adv > 0) & (m > 0)).sum()), int((c & (adv < 0) & (m > 0)).sum()))
        branch = dict(clipped_pos_neg=both(s2 < s1), unclipped_outside_pos_neg=both((s2 > s1)),
                      inside=int((((ratio - 1).abs() < eps) * (m > 0)).sum()))
    return float(loss), lp.grad.clone(), stats, branch


def entropy_loss(entropy, m, coef):
    e = entropy.clone().requires_grad_(True)
    loss = -coef * masked_mean(e, m)
    loss.backward()
    return float(loss), e.grad.clone(), float(masked_mean(entropy, m))


def value_loss(v_new, v_old, ret, m, eps):
    vn = v_new.clone().requires_grad_(True)
    l1 = (vn - ret) ** 2
    if eps > 0:
        vc = v_old + torch.clamp(vn - v_old, -eps, eps)
        l2 = (vc - ret) ** 2
        lmax = torch.max(l1, l2)
    else:
        l2 = l1
        lmax = l1
    loss = 0.5 * masked_mean(lmax, m)
    loss.backward()
    with torch.no_grad():
        err = v_new - ret
        mr = masked_mean(ret, m)
        var_r = masked_mean((ret - mr) ** 2, m)
        me = masked_mean(err, m)
        var_e = masked_mean((err - me) ** 2, m)
        # margins: how far each token is from a kink (band edge or a tie of the two terms)
        d = (v_new - v_old).abs()
        band = float(((d - eps).abs() + (1 - m) * 1e9).min()) if eps > 0 else float("inf")
        tie = float((((l1 - l2).abs() + (1 - m) * 1e9) + (d <= eps) * 1e9).min()) if eps > 0 else float("inf")
        stats = dict(explained_var=float(1 - var_e / var_r), value_error=float(masked_mean(err ** 2, m)),
                     clip_frac=float(masked_mean(((l2 > l1).double()), m)))
    return float(loss), vn.grad.clone(), stats, dict(band_margin=band, tie_margin=tie)


def kl_loss(logp_new, logp_ref, m, coef):
    lp = logp_new.clone().requires_grad_(True)
    x = logp_ref - lp
    loss = coef * masked_mean(torch.exp(x) - x - 1, m)
    loss.backward()
    return float(loss), lp.grad.clone()


def running_normalize(prev, scores, clip):
    allv = torch.cat([prev, scores])
    mean, var = allv.mean(), allv.var(unbiased=False)
    out = ((scores - mean) * torch.rsqrt(var + EPS_WHITEN)).clamp(-clip, clip)
    return out, dict(mean=float(mean), m2=float(var * len(allv)), count=len(allv))


def batch_normalize(scores, clip):
    return whiten(scores, torch.ones_like(scores)).clamp(-clip, clip)


def grpo(scores, scale_std, eps):
    s = scores.view(G, K)
    a = s - s.mean(1, keepdim=True)
    if scale_std:
        a = a / (s.std(1, keepdim=True) + eps)  # unbiased
    return a.flatten()


def rloo(scores):
    s = scores.view(G, K)
    others = (s.sum(1, keepdim=True) - s) / (K - 1)
    return (s - others).flatten()


def best_of_k(scores):
    s = scores.view(G, K).tolist()
    # first index of the maximum
    return [g * K + max(range(K), key=lambda k: (s[g][k], -k)) for g in range(G)]


def kl_ctl(beta0, kls, n_steps, target, horizon):
    beta, out = beta0, []
    for kl in kls:
        e = min(max(kl / target - 1, -0.2), 0.2)
        beta = beta * (1 + e * n_steps / horizon)
        out.append(beta)
    return out


def flat(x):
    return [float(v) for v in x.flatten().tolist()]


def main():
    gen = torch.Generator().manual_seed(SEED)
    I = inputs(gen)
    m = I["mask"]
    E = {}

    # 1. KL and token rewards
    for est in ("k1", "k3"):
        k, seq, mean = kl_est(I["logp_old"], I["logp_ref"], m, est)
        E["kl_" + est], E["kl_seq_" + est], E["kl_mean_" + est] = flat(k), flat(seq), mean
    kl_k1 = f32(torch.tensor(E["kl_k1"]).view(B, T))

    # 2. score normalisation (running: the prior state is prev_scores)
    s_run, run_state = running_normalize(I["prev_scores"], I["scores"], P["reward_clip"])
    E["scores_running"], E["running_state"] = flat(s_run), run_state
    E["scores_batch"] = flat(batch_normalize(I["scores"], P["reward_clip"]))
    E["scores_clip_only"] = flat(I["scores"].clamp(-P["reward_clip"], P["reward_clip"]))
    n_clipped = int((s_run.abs() >= P["reward_clip"]).sum())

    rewards = token_rewards(kl_k1, f32(s_run), m, P["beta"])
    E["rewards"] = flat(rewards)

    # 3. GAE for each (gamma, lambda), from the float32 rewards
    E["gae"] = []
    for gamma, lam in P["gae"]:
        a, r = gae(f32(rewards), I["values_old"], m, gamma, lam)
        E["gae"].append(dict(gamma=gamma, lam=lam, adv=flat(a), ret=flat(r)))
    adv0 = f32(torch.tensor(E["gae"][0]["adv"]).view(B, T))
    ret0 = f32(torch.tensor(E["gae"][0]["ret"]).view(B, T))

    # 4. advantage whitening
    E["adv_white"] = flat(whiten(adv0, m))
    E["adv_white_noshift"] = flat(whiten(adv0, m, shift_mean=False))
    adv_in = f32(torch.tensor(E["adv_white"]).view(B, T))

    # 5-7. losses
    loss, grad, stats, branch = policy_loss(I["logp_new"], I["logp_old"], adv_in, m, P["clip_eps"])
    E["policy"] = dict(loss=loss, dlogp=flat(grad), **stats)
    loss, grad, mean_ent = entropy_loss(I["entropy"], m, P["entropy_coef"])
    E["entropy"] = dict(loss=loss, dentropy=flat(grad), mean=mean_ent)
    loss, grad, stats, vmargin = value_loss(I["values_new"], I["values_old"], ret0, m, P["value_clip"])
    E["value"] = dict(loss=loss, dvalues=flat(grad), **stats)
    loss, grad, stats, _ = value_loss(I["values_new"], I["values_old"], ret0, m, 0.0)
    E["value_noclip"] = dict(loss=loss, dvalues=flat(grad), **stats)
    loss, grad = kl_loss(I["logp_new"], I["logp_ref"], m, P["kl_coef"])
    E["kl_loss"] = dict(loss=loss, dlogp=flat(grad))

    # 8. adaptive KL controller: below, near, above target, clipped both ways
    kls = [3.0, 6.5, 12.0, 0.5, 5.9]
    E["kl_ctl"] = dict(kls=kls, betas=kl_ctl(P["kl_beta0"], kls, P["kl_n_steps"], P["kl_target"], P["kl_horizon"]))

    # 9. critic-free
    sg = I["scores_group"]
    E["grpo"] = flat(grpo(sg, True, P["grpo_eps"]))
    E["grpo_nostd"] = flat(grpo(sg, False, P["grpo_eps"]))
    E["rloo"] = flat(rloo(sg))
    E["best_of_k"] = best_of_k(sg)
    E["grpo_tokens"] = flat(torch.tensor(E["grpo"][:B]).view(B, 1) * m)  # rows 0..B-1 broadcast

    params = dict(P)
    params["gae"] = [list(p) for p in P["gae"]]
    doc = dict(generator="tests/rl_ref.py", seed=SEED, torch=torch.__version__, B=B, T=T, G=G, K=K, params=params,
               inputs={k: flat(v) for k, v in I.items()}, expect=E)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, OUT)

    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))
    print("policy branches (A>0, A<0): %s" % branch)
    print("value loss margins from kinks: %s" % vmargin)
    print("running-normalised scores clipped: %d of %d" % (n_clipped, B))
    print("masked tokens: %d" % int(m.sum()))


if __name__ == "__main__":
    main()
