#!/usr/bin/python3
"""Cross-check the C codec against an independent Python reading of
proto/PROTOCOL.md (Debian's python3-zmq and python3-msgpack).

  python3 proto_py_check.py PATH/TO/proto_tool

1. Python encodes random messages of every type from the spec (msgpack's
   own choices: float64 for every float, smallest ints, keys in any order,
   unknown keys added) and sends them over ZeroMQ to `proto_tool serve`;
   the C decoder must accept each one and report exactly the fields sent
   (defaults filled in).
2. The C side encodes each decoded message again and sends it back; the
   strict spec decoder below must read the same values from it.
3. Malformed messages are rejected with the reason the spec names.
4. `proto_tool samples` files (C-encoded) decode here to what C says.

Exit 0 on success, 1 on a mismatch, 77 (ctest skip) without the modules.
"""
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

try:
    import msgpack
    import zmq
except ImportError as e:  # pragma: no cover
    print("SKIP: python3-zmq and python3-msgpack are needed (%s)" % e)
    sys.exit(77)

MAGIC = 0x524C4846
VERSION = 1
TYPES = {
    "hello": 1, "heartbeat": 2, "bye": 3, "stats": 4,
    "work_request": 10, "ticket": 11, "rollouts": 12,
    "score_request": 20, "score_work": 21, "scored": 22,
    "weights_announce": 30, "weights_request": 31, "weights_chunk": 32,
}
NAMES = {v: k for k, v in TYPES.items()}
U64 = (1 << 64) - 1
FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL:", msg)


# ---- spec helpers ----

def i32(xs):
    return struct.pack("<%di" % len(xs), *xs)


def f32(xs):
    return struct.pack("<%df" % len(xs), *xs)


def r32(x):
    """x rounded to float32, as a receiver storing a float32 field sees it"""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def envelope(tname, body, sender="py-actor", seq=1):
    return msgpack.packb([MAGIC, VERSION, TYPES[tname], sender, seq, body], use_bin_type=True)


def shuffled(rng, d):
    items = list(d.items())
    rng.shuffle(items)
    return dict(items)


# ---- random messages: (wire body, expected decoded body) ----

def name(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_:=.0123456789") for _ in range(rng.randint(1, 20)))


def tokens(rng, n, vocab=264):
    return [rng.randrange(vocab) for _ in range(n)]


def logprobs(rng, n):
    return [-rng.random() * 8 for _ in range(n)]


def opt(rng, p=0.5):
    return rng.random() < p


def gen_hello(rng):
    role = rng.choice(["actor", "reward", "learner"])
    caps = [name(rng) for _ in range(rng.randint(0, 5))]
    w, e = {"role": role}, {"role": role, "caps": caps, "software": "", "weights_version": 0}
    if caps or opt(rng):
        w["caps"] = caps
    if opt(rng):
        w["software"] = e["software"] = "py/3 (test client)"
    if opt(rng):
        w["weights_version"] = e["weights_version"] = rng.randint(1, U64)
    return w, e


def gen_heartbeat(rng):
    w, e = {}, {"in_flight": 0, "weights_version": 0}
    if opt(rng):
        w["in_flight"] = e["in_flight"] = rng.randint(0, 2**32 - 1)
    if opt(rng):
        w["weights_version"] = e["weights_version"] = rng.randint(0, U64)
    return w, e


def gen_bye(rng):
    if opt(rng):
        return {}, {"reason": ""}
    return {"reason": "shutting down: SIGTERM"}, {"reason": "shutting down: SIGTERM"}


def gen_stats(rng):
    vals = {}
    for _ in range(rng.randint(0, 10)):
        vals[name(rng)] = rng.choice([rng.randint(0, 10**12), rng.uniform(-1e6, 1e6), 0.0])
    return {"values": vals}, {"values": {k: float(v) for k, v in vals.items()}}


def gen_work_request(rng):
    w = {"credit": rng.randint(1, 1024), "weights_version": rng.randint(0, U64)}
    return w, dict(w)


def gen_score_request(rng):
    w = {"credit": rng.randint(1, 1024)}
    return w, dict(w)


def gen_ticket(rng):
    temp = rng.choice([0, 1, 0.7, 1.3, rng.uniform(0, 2)])  # ints are numbers too
    s_w = {"temperature": temp, "max_new_tokens": rng.randint(1, 512), "seed": rng.randint(0, U64)}
    s_e = {"temperature": r32(temp), "top_k": 0, "top_p": 1.0, "max_new_tokens": s_w["max_new_tokens"],
           "stop": [], "seed": s_w["seed"]}
    if opt(rng):
        s_w["top_k"] = s_e["top_k"] = rng.randint(0, 100)
    if opt(rng):
        s_w["top_p"] = rng.uniform(0.05, 1.0)
        s_e["top_p"] = r32(s_w["top_p"])
    if opt(rng):
        stop = tokens(rng, rng.randint(0, 8))
        s_w["stop"], s_e["stop"] = i32(stop), stop
    k = rng.randint(1, 8)
    prompts_w, prompts_e = [], []
    for _ in range(rng.randint(1, 6)):
        toks = tokens(rng, rng.randint(1, 40))
        pid = rng.randint(0, U64)
        prompts_w.append(shuffled(rng, {"id": pid, "tokens": i32(toks)}))
        prompts_e.append({"id": pid, "tokens": toks})
    w = {"ticket": rng.randint(0, U64), "policy_version": rng.randint(0, U64), "k": k,
         "deadline_ms": rng.randint(1, 86400000), "sampling": shuffled(rng, s_w), "prompts": prompts_w}
    e = dict(w, task="", sampling=s_e, prompts=prompts_e)
    if opt(rng):
        w["task"] = e["task"] = "add"
    return w, e


def gen_rollouts(rng):
    sw, se = [], []
    for _ in range(rng.randint(1, 8)):
        p, c = tokens(rng, rng.randint(1, 30)), tokens(rng, rng.randint(1, 64))
        lp = [r32(x) for x in logprobs(rng, len(c))]
        s = {"prompt_index": rng.randint(0, 1023), "sample_index": rng.randint(0, 255), "prompt": i32(p),
             "completion": i32(c), "logprobs": f32(lp), "finish": rng.choice([1, 2]),
             "policy_version": rng.randint(0, U64)}
        e = dict(s, prompt=p, completion=c, logprobs=lp, queue_us=0, gen_us=0)
        if opt(rng):
            s["queue_us"] = e["queue_us"] = rng.randint(0, 10**9)
        if opt(rng):
            s["gen_us"] = e["gen_us"] = rng.randint(0, 10**9)
        sw.append(shuffled(rng, s))
        se.append(e)
    t = rng.randint(0, U64)
    return {"ticket": t, "samples": sw}, {"ticket": t, "samples": se}


def gen_score_work(rng):
    sw, se = [], []
    for _ in range(rng.randint(1, 6)):
        p, c = tokens(rng, rng.randint(1, 30)), tokens(rng, rng.randint(1, 64))
        s = {"prompt_index": rng.randint(0, 1023), "sample_index": rng.randint(0, 255),
             "prompt_id": rng.randint(0, U64), "prompt": i32(p), "completion": i32(c), "finish": rng.choice([1, 2])}
        sw.append(shuffled(rng, s))
        se.append(dict(s, prompt=p, completion=c))
    t = rng.randint(0, U64)
    w = {"ticket": t, "samples": sw}
    e = {"ticket": t, "task": "", "temperature": 1.0, "want_ref": False, "samples": se}
    if opt(rng):
        w["task"] = e["task"] = "add"
    if opt(rng):
        w["temperature"] = 0.7
        e["temperature"] = r32(0.7)
    if opt(rng):
        w["want_ref"] = e["want_ref"] = rng.choice([True, False])
    return w, e


def gen_scored(rng):
    sw, se = [], []
    for _ in range(rng.randint(1, 8)):
        reward = rng.choice([rng.uniform(-5, 5), 1, 0])
        s = {"prompt_index": rng.randint(0, 1023), "sample_index": rng.randint(0, 255), "reward": reward}
        e = dict(s, reward=float(reward), components={}, ref_logprobs=None, score_us=0)
        if opt(rng):
            comps = {name(rng): rng.uniform(-1, 1) for _ in range(rng.randint(0, 16))}
            s["components"], e["components"] = comps, comps
        r = rng.random()
        if r < 0.4:
            lp = [r32(x) for x in logprobs(rng, rng.randint(1, 64))]
            s["ref_logprobs"], e["ref_logprobs"] = f32(lp), lp
        elif r < 0.6:
            s["ref_logprobs"] = None  # nil: absent
        if opt(rng):
            s["score_us"] = e["score_us"] = rng.randint(1, 10**9)
        sw.append(shuffled(rng, s))
        se.append(e)
    t = rng.randint(0, U64)
    return {"ticket": t, "samples": sw}, {"ticket": t, "samples": se}


def gen_weights_announce(rng):
    w = {"version": rng.randint(1, U64), "size": rng.randint(1, 1 << 40), "checksum": rng.randint(0, U64),
         "chunk_max": rng.randint(1, 16 << 20)}
    return w, dict(w)


def gen_weights_request(rng):
    length = rng.randint(1, 16 << 20)
    w = {"version": rng.randint(1, U64), "offset": rng.randint(0, (1 << 40) - length), "length": length}
    return w, dict(w)


def gen_weights_chunk(rng):
    size = rng.randint(1, 1 << 20)
    length = rng.randint(1, min(size, 5000))
    w = {"version": rng.randint(1, U64), "offset": rng.randint(0, size - length), "length": length,
         "status": 0, "size": size, "checksum": rng.randint(0, U64)}
    return w, dict(w)


GENS = {n: globals()["gen_" + n] for n in TYPES}


# ---- strict decoder, written from the spec ----

class SpecError(Exception):
    pass


def need(cond, what):
    if not cond:
        raise SpecError(what)


def uint(v, what, hi=U64):
    need(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= hi, "%s: uint expected, got %r" % (what, v))
    return v


def num(v, what):
    need(isinstance(v, (int, float)) and not isinstance(v, bool), "%s: number expected" % what)
    return float(v)


def string(v, what, maxlen=64):
    need(isinstance(v, str) and len(v.encode()) <= maxlen, "%s: str expected" % what)
    return v


def ints(v, what):
    need(isinstance(v, bytes) and len(v) % 4 == 0, "%s: bin of int32 expected" % what)
    return list(struct.unpack("<%di" % (len(v) // 4), v))


def floats(v, what):
    need(isinstance(v, bytes) and len(v) % 4 == 0, "%s: bin of float32 expected" % what)
    return list(struct.unpack("<%df" % (len(v) // 4), v))


def spec_body(tname, b):
    need(isinstance(b, dict), "body is not a map")
    g = b.get
    if tname == "hello":
        return {"role": string(b["role"], "role"), "caps": [string(c, "cap") for c in g("caps", [])],
                "software": string(g("software", ""), "software"), "weights_version": uint(g("weights_version", 0), "wv")}
    if tname == "heartbeat":
        return {"in_flight": uint(g("in_flight", 0), "in_flight"), "weights_version": uint(g("weights_version", 0), "wv")}
    if tname == "bye":
        return {"reason": string(g("reason", ""), "reason", 256)}
    if tname == "stats":
        return {"values": {string(k, "name"): num(v, k) for k, v in b["values"].items()}}
    if tname == "work_request":
        return {"credit": uint(b["credit"], "credit"), "weights_version": uint(b["weights_version"], "wv")}
    if tname == "score_request":
        return {"credit": uint(b["credit"], "credit")}
    if tname == "ticket":
        s = b["sampling"]
        return {"ticket": uint(b["ticket"], "ticket"), "policy_version": uint(b["policy_version"], "pv"),
                "k": uint(b["k"], "k"), "deadline_ms": uint(b["deadline_ms"], "deadline"),
                "task": string(g("task", ""), "task"),
                "sampling": {"temperature": r32(num(s["temperature"], "temperature")),
                             "top_k": uint(s.get("top_k", 0), "top_k"),
                             "top_p": r32(num(s.get("top_p", 1.0), "top_p")),
                             "max_new_tokens": uint(s["max_new_tokens"], "max_new_tokens"),
                             "stop": ints(s.get("stop", b""), "stop"), "seed": uint(s["seed"], "seed")},
                "prompts": [{"id": uint(p["id"], "id"), "tokens": ints(p["tokens"], "tokens")} for p in b["prompts"]]}
    if tname == "rollouts":
        out = []
        for s in b["samples"]:
            c = ints(s["completion"], "completion")
            lp = floats(s["logprobs"], "logprobs")
            need(len(lp) == len(c), "logprobs length")
            out.append({"prompt_index": uint(s["prompt_index"], "pi"), "sample_index": uint(s["sample_index"], "si"),
                        "prompt": ints(s["prompt"], "prompt"), "completion": c, "logprobs": lp,
                        "finish": uint(s["finish"], "finish"), "policy_version": uint(s["policy_version"], "pv"),
                        "queue_us": uint(s.get("queue_us", 0), "queue_us"), "gen_us": uint(s.get("gen_us", 0), "gen_us")})
        return {"ticket": uint(b["ticket"], "ticket"), "samples": out}
    if tname == "score_work":
        want = g("want_ref", False)
        need(isinstance(want, bool), "want_ref: bool expected")
        return {"ticket": uint(b["ticket"], "ticket"), "task": string(g("task", ""), "task"),
                "temperature": r32(num(g("temperature", 1.0), "temperature")), "want_ref": want,
                "samples": [{"prompt_index": uint(s["prompt_index"], "pi"), "sample_index": uint(s["sample_index"], "si"),
                             "prompt_id": uint(s["prompt_id"], "pid"), "prompt": ints(s["prompt"], "prompt"),
                             "completion": ints(s["completion"], "completion"), "finish": uint(s["finish"], "finish")}
                            for s in b["samples"]]}
    if tname == "scored":
        out = []
        for s in b["samples"]:
            ref = s.get("ref_logprobs")
            ref = floats(ref, "ref_logprobs") if ref is not None else None
            out.append({"prompt_index": uint(s["prompt_index"], "pi"), "sample_index": uint(s["sample_index"], "si"),
                        "reward": num(s["reward"], "reward"),
                        "components": {string(k, "name"): num(v, k) for k, v in s.get("components", {}).items()},
                        "ref_logprobs": ref or None, "score_us": uint(s.get("score_us", 0), "score_us")})
        return {"ticket": uint(b["ticket"], "ticket"), "samples": out}
    if tname in ("weights_announce", "weights_request", "weights_chunk"):
        keys = {"weights_announce": ["version", "size", "checksum", "chunk_max"],
                "weights_request": ["version", "offset", "length"],
                "weights_chunk": ["version", "offset", "length", "status", "size", "checksum"]}[tname]
        return {k: uint(b[k], k) for k in keys}
    raise SpecError("unknown type " + tname)


def spec_decode(frames):
    env = msgpack.unpackb(frames[0], raw=False)
    need(isinstance(env, list) and len(env) == 6, "envelope is not an array of 6")
    magic, version, t, sender, seq, body = env
    need(magic == MAGIC, "bad magic")
    need(version == VERSION, "bad version")
    need(t in NAMES, "unknown type %r" % t)
    tname = NAMES[t]
    need(isinstance(sender, str) and 1 <= len(sender) <= 64, "sender")
    uint(seq, "seq")
    need(len(frames) == (2 if tname == "weights_chunk" else 1), "frame count")
    out = {"type": tname, "sender": sender, "seq": seq, "body": spec_body(tname, body)}
    if tname == "weights_chunk":
        need(len(frames[1]) == out["body"]["length"], "data frame length")
    return out


# ---- the exchange ----

def strip(j):
    """JSON from C minus what Python cannot compute (xxh3 of chunk data)."""
    if isinstance(j, dict) and j.get("type") == "weights_chunk":
        j["body"].pop("data_xxh3", None)
    return j


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    rng = random.Random(1234)
    proc = subprocess.Popen([tool, "serve", "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    try:
        endpoint = proc.stdout.readline().strip()
        if not endpoint.startswith("tcp://"):
            fail("proto_tool serve printed %r" % endpoint)
            return 1
        sock.connect(endpoint)

        def ask(frames):
            sock.send_multipart(frames)
            reply = sock.recv_multipart()
            return json.loads(reply[0]), reply[1:]

        # 1 + 2: accepted, same fields; C's encoding reads the same here
        n = 0
        for tname in TYPES:
            for it in range(25):
                wire, expect_body = GENS[tname](rng)
                wire = shuffled(rng, wire)
                if opt(rng, 0.3):
                    wire["x_future_field"] = [1, {"nested": b"\x00\x01"}, None]  # ignored by receivers
                seq = rng.randint(0, U64)
                frames = [envelope(tname, wire, "py-%d" % it, seq)]
                data = b""
                if tname == "weights_chunk":
                    data = bytes(rng.randrange(256) for _ in range(wire["length"]))
                    frames.append(data)
                expect = {"type": tname, "sender": "py-%d" % it, "seq": seq, "body": expect_body}
                got, back = ask(frames)
                if "reject" in got:
                    fail("%s #%d rejected by C: %s" % (tname, it, got))
                    continue
                if strip(got) != expect:
                    fail("%s #%d: C decoded\n  %s\nexpected\n  %s" % (tname, it, got, expect))
                    continue
                try:
                    mine = spec_decode(back)
                except (SpecError, KeyError, ValueError) as e:
                    fail("%s #%d: C's encoding breaks the spec: %s" % (tname, it, e))
                    continue
                if mine != expect:
                    fail("%s #%d: C encoded\n  %s\nexpected\n  %s" % (tname, it, mine, expect))
                if tname == "weights_chunk" and back[1] != data:
                    fail("weights_chunk #%d: data frame changed" % it)
                n += 1
        print("ok: %d messages of %d types accepted by C and re-encoded to the spec" % (n, len(TYPES)))

        # 3: rejected with the right reason
        w, _ = gen_rollouts(random.Random(5))
        s0 = dict(w["samples"][0])
        sc, _ = gen_scored(random.Random(6))
        good = envelope("rollouts", w)
        bad = [
            ("truncated", good[:-3], "truncated"),
            ("trailing byte", good + b"\x00", "trailing_bytes"),
            ("bad magic", msgpack.packb([0x52, 1, 12, "py", 1, w]), "bad_magic"),
            ("version 2", msgpack.packb([MAGIC, 2, 12, "py", 1, w]), "bad_version"),
            ("type 99", msgpack.packb([MAGIC, 1, 99, "py", 1, {}]), "unknown_type"),
            ("envelope of 5", msgpack.packb([MAGIC, 1, 12, "py", 1]), "bad_envelope"),
            ("sender with space", envelope("heartbeat", {}, sender="py actor"), "bad_string"),
            ("negative credit", envelope("work_request", {"credit": -1, "weights_version": 0}), "negative_count"),
            ("credit 0", envelope("work_request", {"credit": 0, "weights_version": 0}), "out_of_range"),
            ("credit as str", envelope("work_request", {"credit": "1", "weights_version": 0}), "wrong_type"),
            ("missing credit", envelope("work_request", {"weights_version": 0}), "missing_field"),
            ("tokens as array", envelope("rollouts", dict(w, samples=[dict(s0, prompt=[1, 2, 3])])), "wrong_type"),
            ("tokens bin of 7", envelope("rollouts", dict(w, samples=[dict(s0, prompt=b"\x01" * 7)])), "bad_length"),
            ("token -1", envelope("rollouts", dict(w, samples=[dict(s0, prompt=i32([5, -1]))])), "bad_token"),
            ("logprob NaN", envelope("rollouts", dict(w, samples=[dict(s0, logprobs=f32(
                [math.nan] * (len(s0["completion"]) // 4)))])), "nan_logprob"),
            ("reward NaN", envelope("scored", dict(sc, samples=[dict(sc["samples"][0], reward=math.nan)])), "nan_reward"),
            ("reward inf", envelope("scored", dict(sc, samples=[dict(sc["samples"][0], reward=math.inf)])), "nan_reward"),
            ("component NaN", envelope("scored", dict(sc, samples=[dict(sc["samples"][0], components={"x": math.nan})])),
             "nan_reward"),
            ("bin32 of 4 GiB", b"\x96" + msgpack.packb(MAGIC) + b"\x01\x0c\xa2py\x01\xc6\xff\xff\xff\xff",
             "too_large"),
            ("4097 samples", envelope("rollouts", dict(w, samples=[s0] * 4097)), "too_large"),
            ("chunk without data", envelope("weights_chunk", gen_weights_chunk(random.Random(1))[0]), "bad_frames"),
        ]
        for what, msg, reason in bad:
            got, _ = ask([msg])
            if got.get("reject") != reason:
                fail("%s: C said %s, spec says %s" % (what, got, reason))
        wc, _ = gen_weights_chunk(random.Random(2))
        got, _ = ask([envelope("weights_chunk", wc), b"\x00" * (wc["length"] + 1)])
        if got.get("reject") != "bad_frames":
            fail("chunk with a long data frame: %s" % got)
        print("ok: %d malformed messages rejected with the spec's reason" % (len(bad) + 1))
        sock.send_multipart([b"quit"])
        sock.recv_multipart()
    finally:
        sock.close()
        ctx.term()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # 4: C-encoded sample files
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([tool, "samples", d], check=True)
        for tname in TYPES:
            frames = [open(os.path.join(d, tname + ".msg"), "rb").read()]
            if tname == "weights_chunk":
                frames.append(open(os.path.join(d, tname + ".data"), "rb").read())
            want = strip(json.load(open(os.path.join(d, tname + ".json"))))
            try:
                mine = spec_decode(frames)
            except (SpecError, KeyError, ValueError) as e:
                fail("sample %s breaks the spec: %s" % (tname, e))
                continue
            if mine != want:
                fail("sample %s: read\n  %s\nC wrote\n  %s" % (tname, mine, want))
        print("ok: %d C-encoded samples read by the spec decoder" % len(TYPES))
    if FAILS:
        print("%d failures" % len(FAILS))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
