#!/usr/bin/env python3
"""PyTorch side-by-side for the CUDA backend's decode benchmark.

One Phi-4-shaped decode step (vocab 100352, d_model 5120, 40 layers, 40/10 heads of 128, SwiGLU
17920, RMSNorm, neox RoPE theta 250000, untied LM head) in bf16 with random weights and a static
bf16 KV cache whose first `depth` positions hold random data, captured in a CUDA graph per depth (the step at pos = depth attends depth + 1 positions, the same work as pdvm's step) and
replayed; median ms/token over --tokens replays after warm-up, timed with CUDA events.
Prints ms/token, GB/s (weights + KV read) and the ratio to pdvm's numbers when given its JSON.

  python3 scripts/torch_decode_bench.py --depths 0,1024,4096 --pdvm-json cuda-ops-phi-4-bf16.json
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

VOCAB, D, LAYERS, HEADS, KV_HEADS, HD, FF, THETA, EPS = 100352, 5120, 40, 40, 10, 128, 17920, 250000.0, 1e-5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depths", default="0,1024,4096")
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--layers", type=int, default=LAYERS)
    ap.add_argument("--pdvm-json", action="append", default=[])
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    depths = [int(x) for x in a.depths.split(",")]
    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    ctx = max(depths) + 1

    def w(rows, cols):  # std 1/sqrt(cols), like pdvm's synthetic weights
        return (torch.randn(rows, cols, device=dev, dtype=dt) * cols ** -0.5)

    qkv_rows = (HEADS + 2 * KV_HEADS) * HD
    layers = []
    for _ in range(a.layers):
        layers.append(dict(
            n1=torch.ones(D, device=dev, dtype=dt), n2=torch.ones(D, device=dev, dtype=dt),
            qkv=w(qkv_rows, D), o=w(D, HEADS * HD), gu=w(2 * FF, D), down=w(D, FF)))
    emb = torch.randn(VOCAB, D, device=dev, dtype=dt)
    head = w(VOCAB, D)
    norm_out = torch.ones(D, device=dev, dtype=dt)
    # static KV cache [layer][kv_head][pos][hd], random where a depth is "already decoded"
    kc = torch.randn(a.layers, KV_HEADS, ctx, HD, device=dev, dtype=dt)
    vc = torch.randn(a.layers, KV_HEADS, ctx, HD, device=dev, dtype=dt)
    inv = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    ang = torch.arange(ctx, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(dev, dt)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(dev, dt)
    weight_bytes = sum(t.numel() * 2 for l in layers for t in l.values()) + head.numel() * 2

    def rms(x, g):
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS)).to(dt) * g

    def rot(x, c, s):
        h = x.shape[-1] // 2
        return x * c + torch.cat([-x[..., h:], x[..., :h]], -1) * s

    token = torch.zeros(1, dtype=torch.long, device=dev)

    def step(pos):  # pos is a Python int: one graph per depth
        x = emb[token]  # [1, D]
        c, s = cos[pos], sin[pos]
        for i, l in enumerate(layers):
            h = rms(x, l["n1"])
            qkv = F.linear(h, l["qkv"])
            q = qkv[:, : HEADS * HD].view(HEADS, HD)
            k = qkv[:, HEADS * HD: (HEADS + KV_HEADS) * HD].view(KV_HEADS, HD)
            v = qkv[:, (HEADS + KV_HEADS) * HD:].view(KV_HEADS, HD)
            q, k = rot(q, c, s), rot(k, c, s)
            kc[i, :, pos] = k
            vc[i, :, pos] = v
            att = F.scaled_dot_product_attention(
                q.view(1, HEADS, 1, HD), kc[i, :, : pos + 1].unsqueeze(0),
                vc[i, :, : pos + 1].unsqueeze(0), enable_gqa=True)
            x = x + F.linear(att.reshape(1, HEADS * HD), l["o"])
            gu = F.linear(rms(x, l["n2"]), l["gu"])
            x = x + F.linear(F.silu(gu[:, :FF]) * gu[:, FF:], l["down"])
        logits = F.linear(rms(x, norm_out), head)
        return logits.argmax(-1)

    pdvm = {}
    for path in a.pdvm_json:
        try:
            j = json.load(open(path))
            pdvm[j["device"]["gpu_mode"]] = {r["depth"]: r["ms_per_token"]["median"] for r in j["results"]}
        except (OSError, KeyError, ValueError) as e:
            print(f"(no pdvm numbers from {path}: {e})")

    results = []
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, {a.layers} layers, "
          f"weights {weight_bytes / 1e9:.2f} GB bf16")
    for depth in depths:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step(depth)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step(depth)
        for _ in range(a.warmup):
            g.replay()
        times = []
        for _ in range(a.tokens):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            g.replay()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1))
        ms = statistics.median(times)
        kv_bytes = 2 * a.layers * KV_HEADS * (depth + 1) * HD * 2
        gbps = (weight_bytes + kv_bytes) / (ms * 1e6)
        line = f"torch bf16 depth {depth:5d}: {ms:7.3f} ms/token  {1000 / ms:6.1f} tok/s  {gbps:6.0f} GB/s"
        for mode, d in pdvm.items():
            if depth in d:
                line += f"  | pdvm {mode} {d[depth]:.3f} ms: torch/pdvm {ms / d[depth]:.2f}x"
        print(line)
        results.append(dict(depth=depth, ms_per_token=ms, gbps=gbps, weight_bytes=weight_bytes,
                            kv_bytes=kv_bytes, samples_ms=times))
        del g
    if a.json:
        json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, layers=a.layers,
                       results=results), open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
