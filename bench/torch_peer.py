#!/usr/bin/python3
"""PyTorch peer of the C++ training benchmark.

Builds the same model as the engine (spec: shared/spec/model.md) -- `transxssm` (7 SSD layers + 1 attention
layer per 8, Unified RoPE on q,k and on C,B) or `transformer` (all attention, RoPE) -- with SwiGLU MLP,
RMSNorm, per-channel residual scales and a tied embedding / LM head, written the way a competent PyTorch
user would write it for speed on CPU: fused projections, the library's fused causal attention, and the
chunked SSD algorithm (Mamba-2's "minimal" formulation: per-chunk decay matrices, chunk states,
inter-chunk recurrence, state-to-output). Everything in fp32.

It times full training steps (forward + backward + AdamW step + zero_grad) after warm-up and prints one
JSON line. `--self-check` instead validates the chunked SSD against the plain recurrence (values and
gradients) and the attention path against an explicit masked softmax, then exits (non-zero on mismatch).

Run with Debian's torch:  /usr/bin/python3 bench/torch_peer.py --arch transxssm --seq 1024 --threads 2

On a machine whose cores are shared, run the engine and this peer under the same OMP_WAIT_POLICY (it is
left to the environment and echoed in the JSON): with libgomp's default spinning, every parallel region
waits a scheduler slice for a descheduled worker, which made 2-thread steps here 4-5x slower than PASSIVE.
"""
import argparse
import json
import math
import os
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="PyTorch peer training benchmark (see module docstring)")
    p.add_argument("--arch", choices=["transxssm", "transformer"], default="transxssm")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=1536)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunk", type=int, default=256, help="SSD chunk length")
    p.add_argument("--attn-period", type=int, default=8)
    p.add_argument("--attn-offset", type=int, default=7)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--no-embedding", action="store_true",
                   help="time only the layer stack: random hidden states in, mean(out^2) as the loss")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="keep glibc malloc defaults (every large tensor freshly mmapped and page-faulted)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: the same model on the GPU (the GPU check, tools/gpu_check.sh)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: torch.autocast(bfloat16) around forward and loss, fp32 master weights and AdamW "
                        "-- PyTorch's standard mixed precision, the peer of the engine's --precision bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (needs Triton on CUDA)")
    p.add_argument("--self-check", action="store_true",
                   help="validate chunked SSD and attention against naive forms, then exit")
    a = p.parse_args(argv)
    if a.d_model % a.heads != 0:
        p.error(f"--d-model {a.d_model} is not divisible by --heads {a.heads}")
    if (a.d_model // a.heads) % 2 != 0:
        p.error(f"head size {a.d_model // a.heads} must be even for RoPE")
    for name in ("layers", "heads", "intermediate", "vocab", "seq", "batch", "steps", "threads", "chunk"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    return a


ARGS = parse_args()

# Allocator tuning, the CPU analogue of the jemalloc/tcmalloc advice in PyTorch's performance guides. With
# glibc defaults every tensor above the mmap threshold (128 KiB, adapting up to at most 32 MiB) is mmapped on
# allocation and unmapped on free, so each step page-faults its activations afresh; on this VM a 4 KiB fault costs ~10 us and
# that alone made steps 10-30x slower than their arithmetic. Keeping freed memory in the process heap (no
# mmap, no trim, one arena) makes steady-state steps reuse warm pages, as the C++ engine's reused buffers
# do. glibc reads GLIBC_TUNABLES only at start-up, hence the re-exec.
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.arena_max=1"
if not ARGS.no_malloc_tuning and os.environ.get("TORCH_PEER_TUNED") != "1":
    env = dict(os.environ, TORCH_PEER_TUNED="1")
    env["GLIBC_TUNABLES"] = ":".join(t for t in (os.environ.get("GLIBC_TUNABLES"), MALLOC_TUNABLES) if t)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
# Debian's torch calls the system BLAS (OpenBLAS, pthread build), which reads its thread count from the
# environment at load time; torch.set_num_threads alone would not reach it. Set before importing torch.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)

# Fused causal attention: public in torch >= 2.0; torch 1.13 has the same op under a private name that
# returns (output, weights).
if hasattr(F, "scaled_dot_product_attention"):
    def causal_attention(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
else:
    def causal_attention(q, k, v):
        return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)[0]


# ---------------------------------------------------------------------------------------------------------
# Rotary position embedding (rotate-half pairing: i pairs with i + D/2), one table shared by all layers.

def rope_table(seq, dim, theta=10000.0, dtype=torch.float32):
    inv_freq = theta ** (-torch.arange(0, dim // 2, dtype=torch.float64) * 2.0 / dim)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv_freq[None, :]   # (T, D/2)
    ang = torch.cat([ang, ang], dim=-1)                                          # (T, D)
    # shaped (T, 1, D) to broadcast over (batch, T, heads, D)
    return ang.cos().to(dtype)[:, None, :], ang.sin().to(dtype)[:, None, :]


def rotate(v, cos, sin):
    half = v.shape[-1] // 2
    v1, v2 = v[..., :half], v[..., half:]
    return v * cos + torch.cat([-v2, v1], dim=-1) * sin


# ---------------------------------------------------------------------------------------------------------
# SSD scan: chunked form (training kernel) and the plain recurrence (self-check reference).

def ssd_chunked(x, dt, A, B, C, chunk):
    """y_t = sum_{s<=t} exp(L_t - L_s) <C_t, B_s> dt_s x_s,  L_t = sum_{k<=t} dt_k A.

    x (b,T,H,P), dt (b,T,H) after softplus, A (H) negative, B and C (b,T,H,N). Returns y (b,T,H,P).
    """
    b, T, H, P = x.shape
    N = B.shape[-1]
    Q = chunk
    pad = (-T) % Q
    if pad:  # zero-padding at the end: dt = 0 and x = 0 there, and causality keeps it out of real outputs
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    nc = (T + pad) // Q

    def heads_chunks(t):  # (b, T, H, F) -> (b, H, nc, Q, F): one batched matmul per (b, head, chunk)
        return t.reshape(b, nc, Q, H, t.shape[-1]).permute(0, 3, 1, 2, 4)

    X = heads_chunks(x * dt[..., None])                                    # value = dt * x
    Bc, Cc = heads_chunks(B), heads_chunks(C)
    a = (dt * A).reshape(b, nc, Q, H).permute(0, 3, 1, 2)                  # (b,H,nc,Q) log-decays
    acs = a.cumsum(-1)                                                      # within-chunk cumulative

    # 1. intra-chunk: causal linear attention with decay mask exp(L_t - L_s), s <= t.
    causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
    seg = (acs[..., :, None] - acs[..., None, :]).masked_fill(~causal, float("-inf"))
    y = ((Cc @ Bc.transpose(-1, -2)) * seg.exp()) @ X                       # (b,H,nc,Q,P)

    # 2. each chunk's own end state: sum_s exp(L_end - L_s) B_s (x) X_s, kept as (N, P).
    w = (acs[..., -1:] - acs).exp()
    states = (Bc * w[..., None]).transpose(-1, -2) @ X                      # (b,H,nc,N,P)

    # 3. inter-chunk recurrence in closed form: state entering chunk c is
    #    sum_{j<c} exp(Z_c - Z_{j+1}) states_j with Z_c = sum of chunk totals before c.
    Z = F.pad(acs[..., -1].cumsum(-1), (1, 0))                              # (b,H,nc+1)
    strict = torch.ones(nc, nc, dtype=torch.bool, device=x.device).tril(-1)
    carry = (Z[..., :-1, None] - Z[..., None, 1:]).masked_fill(~strict, float("-inf")).exp()
    s_in = (carry @ states.reshape(b, H, nc, N * P)).reshape(b, H, nc, N, P)

    # 4. state-to-output: the incoming state, decayed to each position, read out with C.
    y = y + (Cc @ s_in) * acs.exp()[..., None]
    return y.permute(0, 2, 3, 1, 4).reshape(b, nc * Q, H, P)[:, :T]


def ssd_recurrent(x, dt, A, B, C):
    """S_t = a_t S_{t-1} + dt_t x_t (x) B_t,  y_t = S_t C_t  (per head, S in R^{P x N})."""
    b, T, H, P = x.shape
    S = x.new_zeros(b, H, P, B.shape[-1])
    ys = []
    for t in range(T):
        a = torch.exp(dt[:, t] * A)                                         # (b,H)
        S = a[..., None, None] * S + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((S @ C[:, t, :, :, None])[..., 0])
    return torch.stack(ys, dim=1)


# ---------------------------------------------------------------------------------------------------------
# Model

class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class SwiGLU(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.gate_up = nn.Linear(d, 2 * inter, bias=False)   # fused gate_proj | up_proj
        self.down = nn.Linear(inter, d, bias=False)

    def forward(self, u):
        g, v = self.gate_up(u).chunk(2, dim=-1)
        return self.down(F.silu(g) * v)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h, self.p = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)            # fused q_proj | k_proj | v_proj
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, u, cos, sin):
        b, T, d = u.shape
        q, k, v = self.qkv(u).view(b, T, 3, self.h, self.p).unbind(2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        y = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # scale 1/sqrt(P)
        return self.o(y.transpose(1, 2).reshape(b, T, d))


class SSD(nn.Module):
    def __init__(self, d, heads, chunk):
        super().__init__()
        self.h, self.p, self.n, self.chunk = heads, d // heads, d // heads, chunk
        self.in_proj = nn.Linear(d, 3 * d + heads, bias=False)  # fused x_proj | b_proj | c_proj | dt_proj
        self.out = nn.Linear(d, d, bias=False)
        self.A_log = nn.Parameter(torch.empty(heads).uniform_(1.0, 16.0).log())
        dt = torch.exp(torch.empty(heads).uniform_(math.log(1e-3), math.log(1e-1))).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))       # inverse softplus

    def forward(self, u, cos, sin):
        b, T, d = u.shape
        x, Bm, Cm, dt = self.in_proj(u).split([d, d, d, self.h], dim=-1)
        x = x.view(b, T, self.h, self.p)
        Bm = rotate(Bm.view(b, T, self.h, self.n), cos, sin)
        Cm = rotate(Cm.view(b, T, self.h, self.n), cos, sin)
        dt = F.softplus(dt + self.dt_bias)
        y = ssd_chunked(x, dt, -torch.exp(self.A_log), Bm, Cm, self.chunk)
        return self.out(y.reshape(b, T, d))


class Block(nn.Module):
    def __init__(self, a, kind):
        super().__init__()
        d = a.d_model
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.w1, self.w2 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.mixer = Attention(d, a.heads) if kind == "attention" else SSD(d, a.heads, a.chunk)
        self.mlp = SwiGLU(d, a.intermediate)

    def forward(self, h, cos, sin):
        h = self.w1 * h + self.mixer(self.norm1(h), cos, sin)
        return self.w2 * h + self.mlp(self.norm2(h))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        if a.arch == "transformer":
            kinds = ["attention"] * a.layers
        else:
            kinds = ["attention" if i % a.attn_period == a.attn_offset else "ssd" for i in range(a.layers)]
        self.kinds = kinds
        self.with_embedding = not a.no_embedding
        if self.with_embedding:
            self.embed = nn.Embedding(a.vocab, a.d_model)       # tied: also the LM head
            self.norm = RMSNorm(a.d_model)
        self.layers = nn.ModuleList(Block(a, k) for k in kinds)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        cos, sin = rope_table(a.seq, a.d_model // a.heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, inp, targets=None):
        h = self.embed(inp) if self.with_embedding else inp
        for layer in self.layers:
            h = layer(h, self.cos, self.sin)
        if not self.with_embedding:
            return h.pow(2).mean()                              # stand-in loss for stack-only timing
        logits = F.linear(self.norm(h), self.embed.weight)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.reshape(-1))


# ---------------------------------------------------------------------------------------------------------

def self_check():
    torch.manual_seed(0)
    dd = torch.float64
    worst, ok = 0.0, True

    def report(name, got, want, tol):
        nonlocal worst, ok
        err = (got - want).abs().max().item()
        scale = want.abs().max().item()
        worst = max(worst, err)
        good = err <= tol * max(1.0, scale)
        ok = ok and good
        print(f"self-check {name:34s} max|err| {err:.3e}  (max|ref| {scale:.3e})  {'ok' if good else 'MISMATCH'}")

    # SSD: several chunks plus a ragged tail, values and gradients vs the recurrence (float64).
    for (b, T, H, P, N, Q) in [(2, 50, 3, 4, 6, 16), (1, 64, 2, 8, 8, 64), (1, 37, 2, 4, 4, 8)]:
        x = torch.randn(b, T, H, P, dtype=dd, requires_grad=True)
        dt = F.softplus(torch.randn(b, T, H, dtype=dd)).requires_grad_()
        A = (-torch.empty(H, dtype=dd).uniform_(1, 16)).requires_grad_()
        B = torch.randn(b, T, H, N, dtype=dd, requires_grad=True)
        C = torch.randn(b, T, H, N, dtype=dd, requires_grad=True)
        g = torch.randn(b, T, H, P, dtype=dd)
        ins = (x, dt, A, B, C)
        y1 = ssd_chunked(*ins, Q)
        d1 = torch.autograd.grad(y1, ins, g)
        y2 = ssd_recurrent(*ins)
        d2 = torch.autograd.grad(y2, ins, g)
        tag = f"T={T} Q={Q}"
        report(f"ssd chunked vs recurrent y  {tag}", y1, y2, 1e-10)
        for nm, u, v in zip(("dx", "ddt", "dA", "dB", "dC"), d1, d2):
            report(f"ssd grad {nm:3s} {tag}", u, v, 1e-10)
    # Same in float32 at the benchmark's chunk length, with the model's dt/A ranges (what is timed).
    b, T, H, P = 1, 600, 2, 16
    x, B, C = (torch.randn(b, T, H, P) for _ in range(3))
    dt = F.softplus(torch.randn(b, T, H) - 3.0)
    A = -torch.empty(H).uniform_(1, 16)
    report("ssd fp32 chunk 256 vs fp64 recurrent", ssd_chunked(x, dt, A, B, C, 256).double(),
           ssd_recurrent(x.double(), dt.double(), A.double(), B.double(), C.double()), 1e-4)

    # Attention path (fused op + RoPE) vs explicit masked softmax.
    b, T, H, P = 2, 33, 3, 8
    q, k, v = (torch.randn(b, H, T, P, dtype=dd) for _ in range(3))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(P)
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    report("causal attention vs masked softmax", causal_attention(q, k, v), s.softmax(-1) @ v, 1e-12)

    # RoPE: <rot(u,m), rot(w,n)> depends only on n - m.
    cos, sin = rope_table(40, 8, dtype=dd)
    u, w = torch.randn(8, dtype=dd), torch.randn(8, dtype=dd)
    r = lambda vec, t: rotate(vec, cos[t, 0], sin[t, 0])  # noqa: E731
    report("rope relative-position property", (r(u, 3) * r(w, 10)).sum(), (r(u, 25) * r(w, 32)).sum(), 1e-12)

    print(f"self-check max error {worst:.3e}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def bench(a):
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False   # fp32 means fp32, as in the engine
        torch.backends.cudnn.allow_tf32 = False
    model = Model(a).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]   # norms, residual scales, A_log, dt_bias
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, foreach=True)
    if a.no_embedding:
        inp, tgt = torch.randn(a.batch, a.seq, a.d_model, device=dev), None
    else:
        tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=dev)
        inp, tgt = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    forward = torch.compile(model) if a.compile else model

    def step():
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = forward(inp, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(a.warmup):
        step()
    times, cpu = [], []
    for _ in range(a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if not math.isfinite(loss):
        print(f"error: non-finite loss {loss}", file=sys.stderr)
        return 1
    step_s = sum(times) / len(times)
    if a.device == "cuda":
        peak_mem = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps({
        "device": a.device, "dtype": a.dtype, "compiled": a.compile,
        "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None,
        "peak_gib": round(peak_mem, 2) if a.device == "cuda" else None,
        "arch": a.arch, "d_model": a.d_model, "layers": a.layers, "seq": a.seq, "batch": a.batch,
        "tokens_per_s": round(a.batch * a.seq / step_s, 2), "step_s": round(step_s, 4),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "heads": a.heads, "intermediate": a.intermediate, "vocab": None if a.no_embedding else a.vocab,
        "no_embedding": a.no_embedding, "steps": a.steps, "step_s_min": round(min(times), 4),
        # CPU seconds used by this process per step (all threads): a contention-robust companion to step_s
        "step_cpu_s": round(sum(cpu) / len(cpu), 4),
        "loss": round(loss, 4), "malloc_tuning": not a.no_malloc_tuning,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(self_check() if ARGS.self_check else bench(ARGS))
