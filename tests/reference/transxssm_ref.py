"""Independent float64 PyTorch reference of the TransXSSM model (spec: /work/shared/spec/model.md).

Written from the spec only, plainly, for checking the C++ engine: every formula is the textbook one and
gradients come from autograd. The SSD scan is the naive per-step recurrence (and, for the self-test, the
quadratic form), never the chunked algorithm the engine uses, so agreement is an independent check.

    python3 transxssm_ref.py --selftest       # checks of the reference itself (no engine needed)

Library use:
    cfg, params = load_checkpoint(dir)        # params: name -> float64 tensor
    logits = forward(cfg, params, ids)        # ids: LongTensor [B, T]
    logits, loss, grads = loss_and_grads(cfg, params, ids)
    logprobs, loss = score(cfg, params, ids_row)
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import safetensors_io  # noqa: E402

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------
# Configuration and parameter names (spec §1, §7, §9)

def layer_types(cfg):
    """The explicit list when present, else the period/offset rule of §1."""
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])
    period, offset = cfg["attn_layer_period"], cfg["attn_layer_offset"]
    return ["attention" if i % period == offset else "ssd" for i in range(cfg["num_hidden_layers"])]


def mamba_dims(cfg):
    """(inner width E·d, heads Hm, head size, groups G, state N) of a Mamba-2 mixer."""
    inner = cfg["mamba_expand"] * cfg["hidden_size"]
    head = cfg["mamba_head_dim"]
    return inner, inner // head, head, cfg["mamba_n_groups"], cfg["mamba_d_state"]


def expected_shapes(cfg):
    """Every parameter name of spec §9 with its shape, derived from the config alone."""
    d, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    P, N, K = d // H, cfg["ssm_state_size"], cfg["conv_kernel"]
    shapes = {"model.word_embed.weight": [vocab, d], "model.final_layernorm.weight": [d]}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [vocab, d]
    for i, kind in enumerate(layer_types(cfg)):
        p = f"model.layers.{i}."
        shapes[p + "pre_sequence_layernorm.weight"] = [d]
        shapes[p + "pre_state_layernorm.weight"] = [d]
        if cfg["residual_scale"]:
            shapes[p + "post_sequence_residual.weight"] = [d]
            shapes[p + "post_state_residual.weight"] = [d]
        shapes[p + "feed_forward.gate_proj.weight"] = [inter, d]
        shapes[p + "feed_forward.up_proj.weight"] = [inter, d]
        shapes[p + "feed_forward.down_proj.weight"] = [d, inter]
        if kind == "ssd":
            shapes[p + "ssd.x_proj.weight"] = [H * P, d]
            shapes[p + "ssd.b_proj.weight"] = [H * N, d]
            shapes[p + "ssd.c_proj.weight"] = [H * N, d]
            shapes[p + "ssd.dt_proj.weight"] = [H, d]
            shapes[p + "ssd.A_log"] = [H]
            if cfg["use_dt_bias"]:
                shapes[p + "ssd.dt_bias"] = [H]
            shapes[p + "ssd.out_proj.weight"] = [d, H * P]
            if cfg["ssm_position"] == "conv":
                shapes[p + "ssd.conv1d.weight"] = [H * P + 2 * H * N, 1, K]
                shapes[p + "ssd.conv1d.bias"] = [H * P + 2 * H * N]
                shapes[p + "ssd.D"] = [H]
        elif kind == "attention":
            shapes[p + "attn.q_proj.weight"] = [H * P, d]
            shapes[p + "attn.k_proj.weight"] = [Hkv * P, d]
            shapes[p + "attn.v_proj.weight"] = [Hkv * P, d]
            shapes[p + "attn.o_proj.weight"] = [d, H * P]
        elif kind == "mamba2":
            inner, Hm, _, G, Nm = mamba_dims(cfg)
            conv_ch = inner + 2 * G * Nm
            # use_dt_bias switches the Mamba-2 dt_bias as well (spec §4/§6 leave it open; the engine and
            # the config contract apply it to every mixer that has a dt_bias).
            shapes[p + "mamba.in_proj.weight"] = [2 * inner + 2 * G * Nm + Hm, d]
            shapes[p + "mamba.conv1d.weight"] = [conv_ch, 1, K]
            shapes[p + "mamba.conv1d.bias"] = [conv_ch]
            shapes[p + "mamba.A_log"] = [Hm]
            if cfg["use_dt_bias"]:
                shapes[p + "mamba.dt_bias"] = [Hm]
            shapes[p + "mamba.D"] = [Hm]
            shapes[p + "mamba.norm.weight"] = [inner]
            shapes[p + "mamba.out_proj.weight"] = [d, inner]
        else:
            raise ValueError(f"layer {i}: unknown layer type {kind!r}")
    return shapes


def load_checkpoint(path):
    """(config dict, name -> float64 tensor) of a checkpoint directory."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    tensors, _ = safetensors_io.load(os.path.join(path, "model.safetensors"))
    return cfg, {k: v.to(F64) for k, v in tensors.items()}


# ----------------------------------------------------------------------------------------------------
# Building blocks

def rmsnorm(x, g, eps):
    return g * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def silu(x):
    return x * torch.sigmoid(x)


def rope_table(positions, dim, theta):
    """cos, sin of t·ω_i, ω_i = θ^(−2i/D), i < D/2, for each position t: shapes [T, D/2]."""
    i = torch.arange(dim // 2, dtype=F64)
    omega = theta ** (-2.0 * i / dim)
    angle = positions.to(F64)[:, None] * omega[None, :]
    return torch.cos(angle), torch.sin(angle)


def rotate(v, cos, sin):
    """Rotate-half RoPE of v [B, T, heads, D]: dimension i pairs with i + D/2 (spec §3)."""
    half = v.shape[-1] // 2
    v1, v2 = v[..., :half], v[..., half:]
    c, s = cos[None, :, None, :].to(v.dtype), sin[None, :, None, :].to(v.dtype)
    return torch.cat([v1 * c - v2 * s, v2 * c + v1 * s], dim=-1)


def causal_conv1d(u, weight, bias):
    """Depthwise causal convolution: u [B, T, Ch], weight [Ch, 1, K], bias [Ch].
    out[t] = bias + Σ_k weight[k]·u[t − (K−1) + k]; the last tap multiplies the current step."""
    K = weight.shape[-1]
    T = u.shape[1]
    out = bias.expand_as(u).clone()
    for k in range(K):
        shift = K - 1 - k
        if shift >= T:
            continue
        shifted = torch.cat([torch.zeros_like(u[:, :shift]), u[:, :T - shift]], dim=1)
        out = out + weight[:, 0, k] * shifted
    return out


def ssd_scan_recurrent(x, dt, A, B, C):
    """The SSD recurrence step by step (spec §4):
        S_t = exp(Δ_t·A)·S_{t−1} + Δ_t · x_t ⊗ B_t,   y_t = S_t · C_t
    x [Bt, T, H, P], dt [Bt, T, H], A [H], B/C [Bt, T, H, N]  ->  y [Bt, T, H, P]."""
    Bt, T, H, P = x.shape
    N = B.shape[-1]
    S = torch.zeros(Bt, H, P, N, dtype=x.dtype)
    ys = []
    for t in range(T):
        decay = torch.exp(dt[:, t] * A)                                       # [Bt, H]
        inject = (dt[:, t, :, None, None] * x[:, t, :, :, None]) * B[:, t, :, None, :]
        S = decay[:, :, None, None] * S + inject                              # [Bt, H, P, N]
        ys.append(torch.einsum("bhpn,bhn->bhp", S, C[:, t]))
    return torch.stack(ys, dim=1)


def ssd_scan_quadratic(x, dt, A, B, C):
    """The same scan as causal linear attention with a decay mask:
        y_t = Σ_{s≤t} exp(Λ_t − Λ_s)·⟨C_t, B_s⟩·Δ_s·x_s,  Λ_t = Σ_{k≤t} Δ_k·A."""
    T = x.shape[1]
    lam = torch.cumsum(dt * A, dim=1)                                         # [Bt, T, H]
    diff = lam[:, :, None, :] - lam[:, None, :, :]                            # [Bt, t, s, H]
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None, :, :, None]
    decay = torch.exp(diff.masked_fill(~causal, 0.0)) * causal
    scores = torch.einsum("bthn,bshn->btsh", C, B) * decay
    return torch.einsum("btsh,bsh,bshp->bthp", scores, dt, x)


def linear(x, w):
    """PyTorch Linear layout: w is [out, in]."""
    return x @ w.t()


# ----------------------------------------------------------------------------------------------------
# Mixers

def ssd_mixer(cfg, W, p, u, positions, scan):
    """TransXSSM SSD mixer (spec §4), plus its conv/none position ablations."""
    Bt, T, d = u.shape
    H = cfg["num_attention_heads"]
    P, N = d // H, cfg["ssm_state_size"]
    x = linear(u, W[p + "x_proj.weight"])
    b = linear(u, W[p + "b_proj.weight"])
    c = linear(u, W[p + "c_proj.weight"])
    dt = linear(u, W[p + "dt_proj.weight"])
    if cfg["use_dt_bias"]:
        dt = dt + W[p + "dt_bias"]
    dt = F.softplus(dt)                                                       # Δ [Bt, T, H]
    A = -torch.exp(W[p + "A_log"])
    mode = cfg["ssm_position"]
    if mode == "conv":
        # Mamba-2's implicit position: causal depthwise conv + SiLU over the channels [x, B, C].
        xbc = silu(causal_conv1d(torch.cat([x, b, c], dim=-1), W[p + "conv1d.weight"], W[p + "conv1d.bias"]))
        x, b, c = xbc[..., :H * P], xbc[..., H * P:H * P + H * N], xbc[..., H * P + H * N:]
    x = x.reshape(Bt, T, H, P)
    b = b.reshape(Bt, T, H, N)
    c = c.reshape(Bt, T, H, N)
    if mode == "rope":
        cos, sin = rope_table(positions, N, cfg["rope_theta"])
        b, c = rotate(b, cos, sin), rotate(c, cos, sin)
    elif mode not in ("conv", "none"):
        raise ValueError(f"unknown ssm_position {mode!r}")
    y = scan(x, dt, A, b, c)
    if mode == "conv":
        y = y + W[p + "D"][None, None, :, None] * x
    return linear(y.reshape(Bt, T, H * P), W[p + "out_proj.weight"])


def attention_mixer(cfg, W, p, u, positions):
    """Causal softmax attention with GQA (query head h reads kv head h // (H/Hkv)), spec §5."""
    Bt, T, d = u.shape
    H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    P = d // H
    q = linear(u, W[p + "q_proj.weight"]).reshape(Bt, T, H, P)
    k = linear(u, W[p + "k_proj.weight"]).reshape(Bt, T, Hkv, P)
    v = linear(u, W[p + "v_proj.weight"]).reshape(Bt, T, Hkv, P)
    if cfg["attention_position"] == "rope":
        cos, sin = rope_table(positions, P, cfg["rope_theta"])
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    elif cfg["attention_position"] != "none":
        raise ValueError(f"unknown attention_position {cfg['attention_position']!r}")
    k = k.repeat_interleave(H // Hkv, dim=2)
    v = v.repeat_interleave(H // Hkv, dim=2)
    scores = torch.einsum("bthp,bshp->bhts", q, k) / math.sqrt(P)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    y = torch.einsum("bhts,bshp->bthp", probs, v)
    return linear(y.reshape(Bt, T, H * P), W[p + "o_proj.weight"])


def mamba2_mixer(cfg, W, p, u, scan):
    """Standard Mamba-2 block mixer (spec §6)."""
    Bt, T, d = u.shape
    inner, Hm, hd, G, N = mamba_dims(cfg)
    proj = linear(u, W[p + "in_proj.weight"])
    sizes = [inner, inner, G * N, G * N, Hm]                                  # z, x, B, C, dt
    z, x, b, c, dt = torch.split(proj, sizes, dim=-1)
    xbc = silu(causal_conv1d(torch.cat([x, b, c], dim=-1), W[p + "conv1d.weight"], W[p + "conv1d.bias"]))
    x, b, c = torch.split(xbc, [inner, G * N, G * N], dim=-1)
    if cfg["use_dt_bias"]:
        dt = dt + W[p + "dt_bias"]
    dt = F.softplus(dt)
    A = -torch.exp(W[p + "A_log"])
    x = x.reshape(Bt, T, Hm, hd)
    # Groups share B and C among Hm/G consecutive heads.
    group_of_head = torch.arange(Hm) // (Hm // G)
    b = b.reshape(Bt, T, G, N)[:, :, group_of_head]
    c = c.reshape(Bt, T, G, N)[:, :, group_of_head]
    y = scan(x, dt, A, b, c) + W[p + "D"][None, None, :, None] * x
    y = y.reshape(Bt, T, inner) * silu(z)
    # Gated RMSNorm, normalised per group (one group: the whole inner width).
    y = y.reshape(Bt, T, G, inner // G)
    g = W[p + "norm.weight"].reshape(G, inner // G)
    y = rmsnorm(y, g, cfg["mamba_norm_eps"]).reshape(Bt, T, inner)
    return linear(y, W[p + "out_proj.weight"])


def swiglu(W, p, u):
    return linear(silu(linear(u, W[p + "gate_proj.weight"])) * linear(u, W[p + "up_proj.weight"]),
                  W[p + "down_proj.weight"])


# ----------------------------------------------------------------------------------------------------
# Model

def forward(cfg, W, ids, position_offset=0, scan=ssd_scan_recurrent):
    """Logits [B, T, V] for token ids [B, T]; positions are offset..offset+T−1 in every row."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    T = ids.shape[1]
    positions = torch.arange(T, dtype=F64) + position_offset
    eps = cfg["rms_norm_eps"]
    h = W["model.word_embed.weight"][ids]
    for i, kind in enumerate(layer_types(cfg)):
        p = f"model.layers.{i}."
        u = rmsnorm(h, W[p + "pre_sequence_layernorm.weight"], eps)
        if kind == "ssd":
            m = ssd_mixer(cfg, W, p + "ssd.", u, positions, scan)
        elif kind == "attention":
            m = attention_mixer(cfg, W, p + "attn.", u, positions)
        elif kind == "mamba2":
            m = mamba2_mixer(cfg, W, p + "mamba.", u, scan)
        else:
            raise ValueError(f"layer {i}: unknown layer type {kind!r}")
        h = (W[p + "post_sequence_residual.weight"] * h if cfg["residual_scale"] else h) + m
        u = rmsnorm(h, W[p + "pre_state_layernorm.weight"], eps)
        m = swiglu(W, p + "feed_forward.", u)
        h = (W[p + "post_state_residual.weight"] * h if cfg["residual_scale"] else h) + m
    h = rmsnorm(h, W["model.final_layernorm.weight"], eps)
    head = W["model.word_embed.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return linear(h, head)


def next_token_logprobs(logits, ids):
    """log p(ids[:, t+1] | ids[:, ..t]) for t = 0..T−2: shape [B, T−1]."""
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


def loss_and_grads(cfg, params, ids, scan=ssd_scan_recurrent, dtype=F64):
    """(logits, loss, {name: dloss/dparam}) with loss = mean next-token cross-entropy.
    dtype float32 gives a plain single-precision run, to gauge how well a tensor is conditioned."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    W = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in params.items()}
    logits = forward(cfg, W, ids, scan=scan)
    loss = -next_token_logprobs(logits, ids).mean()
    loss.backward()
    return logits.detach(), loss.detach(), {k: v.grad if v.grad is not None else torch.zeros_like(v)
                                            for k, v in W.items()}


def score(cfg, params, ids_row):
    """(logprobs [T−1], loss) for one row of token ids."""
    ids = torch.as_tensor(ids_row, dtype=torch.long)[None]
    with torch.no_grad():
        lp = next_token_logprobs(forward(cfg, params, ids), ids)[0]
    return lp, -lp.mean()


# ----------------------------------------------------------------------------------------------------
# Random models for self-tests and for exercising every parameter of the engine

def random_params(cfg, gen, scale=1.0):
    """Random non-default values for every parameter of expected_shapes(cfg): Linear weights
    ~ N(0, scale/sqrt(fan_in)) so the nonlinearities matter, norm gains and residual scales around 1,
    A_log in [−1, 2.5], dt_bias in [−4, 0.5], D around 1, conv weights/bias of order 0.5."""
    out = {}
    for name, shape in expected_shapes(cfg).items():
        def randn():
            return torch.randn(shape, generator=gen, dtype=F64)

        def rand():
            return torch.rand(shape, generator=gen, dtype=F64)
        if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
            t = 1.0 + 0.3 * randn()
        elif name.endswith("residual.weight"):
            t = 0.5 + rand()
        elif name.endswith("A_log"):
            t = -1.0 + 3.5 * rand()
        elif name.endswith("dt_bias"):
            t = -4.0 + 4.5 * rand()
        elif name.endswith(".D"):
            t = 1.0 + 0.5 * randn()
        elif name.endswith("conv1d.weight"):
            t = 0.5 * randn()
        elif name.endswith("conv1d.bias"):
            t = 0.3 * randn()
        elif name == "model.word_embed.weight" or name == "lm_head.weight":
            t = scale * randn()
        else:
            t = scale * randn() / math.sqrt(shape[1])
        out[name] = t
    return out


def tiny_config(**over):
    cfg = dict(model_type="transxssm", arch="transxssm", vocab_size=37, hidden_size=16, intermediate_size=24,
               num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=8, ssm_state_size=8,
               layer_types=["ssd", "attention", "mamba2"], attn_layer_period=4, attn_layer_offset=3,
               ssm_position="rope", attention_position="rope", ssm_chunk_size=4, conv_kernel=4,
               rope_theta=10000.0, rms_norm_eps=1e-6, residual_scale=True, use_dt_bias=True,
               tie_word_embeddings=True, initializer_range=0.02, max_position_embeddings=64, mamba_expand=2,
               mamba_head_dim=8, mamba_d_state=6, mamba_n_groups=1, mamba_norm_eps=1e-5)
    cfg.update(over)
    return cfg


# ----------------------------------------------------------------------------------------------------
# Self-test of the reference (no engine)

def selftest():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    failures = []

    def check(name, err, tol):
        ok = err <= tol
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<58} {err:.3e} (tol {tol:.0e})")
        if not ok:
            failures.append(name)

    # 1. Recurrent and quadratic SSD agree, also with strong decay and a long sequence.
    for T, dt_scale in ((5, 1.0), (37, 3.0)):
        x = torch.randn(2, T, 3, 4, generator=gen, dtype=F64)
        dt = F.softplus(dt_scale * torch.randn(2, T, 3, generator=gen, dtype=F64))
        A = -torch.exp(torch.rand(3, generator=gen, dtype=F64) * 2.7)
        B = torch.randn(2, T, 3, 6, generator=gen, dtype=F64)
        C = torch.randn(2, T, 3, 6, generator=gen, dtype=F64)
        yr, yq = ssd_scan_recurrent(x, dt, A, B, C), ssd_scan_quadratic(x, dt, A, B, C)
        check(f"ssd recurrent == quadratic (T={T})", ((yr - yq).abs().max() / yr.abs().max()).item(), 1e-12)

    # 2. RoPE: <rot(u,m), rot(v,n)> depends only on n − m.
    D = 10
    u = torch.randn(1, 1, 1, D, generator=gen, dtype=F64)
    v = torch.randn(1, 1, 1, D, generator=gen, dtype=F64)

    def rot_at(vec, t):
        cos, sin = rope_table(torch.tensor([float(t)]), D, 10000.0)
        return rotate(vec, cos, sin)
    base = (rot_at(u, 3) * rot_at(v, 7)).sum()
    shifted = (rot_at(u, 103) * rot_at(v, 107)).sum()
    check("rope relative property", (base - shifted).abs().item(), 1e-10)
    # Rotation by angle 0 is the identity; rotation keeps the norm.
    check("rope position 0 is identity", (rot_at(u, 0) - u).abs().max().item(), 0.0)
    check("rope keeps the norm", (rot_at(u, 17).norm() - u.norm()).abs().item(), 1e-12)

    # 3. Causal conv: impulse response equals the (reversed) kernel.
    w = torch.randn(3, 1, 4, generator=gen, dtype=F64)
    impulse = torch.zeros(1, 6, 3, dtype=F64)
    impulse[0, 1] = 1.0
    resp = causal_conv1d(impulse, w, torch.zeros(3, dtype=F64))
    expect = torch.zeros(1, 6, 3, dtype=F64)
    for lag in range(4):
        expect[0, 1 + lag] = w[:, 0, 3 - lag]
    check("causal conv impulse response", (resp - expect).abs().max().item(), 0.0)

    # Model-level checks on random configs covering every option.
    configs = {
        "mixed rope/rope gqa untied": tiny_config(tie_word_embeddings=False),
        "conv ablation, no dt_bias, no residual": tiny_config(ssm_position="conv", use_dt_bias=False,
                                                             residual_scale=False),
        "none ablation, attention none, N != P": tiny_config(ssm_position="none", attention_position="none",
                                                             ssm_state_size=4, num_key_value_heads=2),
        "mamba2 with 2 groups": tiny_config(layer_types=["mamba2", "attention"], num_hidden_layers=2,
                                            mamba_n_groups=2),
    }
    for cname, cfg in configs.items():
        W = random_params(cfg, gen)
        ids = torch.randint(0, cfg["vocab_size"], (2, 9), generator=gen)
        logits = forward(cfg, W, ids)
        # 4. Chunk-free forms agree at model level.
        lq = forward(cfg, W, ids, scan=ssd_scan_quadratic)
        check(f"[{cname}] recurrent == quadratic logits", (logits - lq).abs().max().item(), 1e-11)
        # 5. Causality: changing the last token leaves earlier logits alone.
        ids2 = ids.clone()
        ids2[:, -1] = (ids2[:, -1] + 1) % cfg["vocab_size"]
        l2 = forward(cfg, W, ids2)
        check(f"[{cname}] causal", (l2[:, :-1] - logits[:, :-1]).abs().max().item(), 1e-12)
        changed = (l2[:, -1] - logits[:, -1]).abs().max().item()
        check(f"[{cname}] last token changes its logits (exp(-change))", math.exp(-changed), 1.0 - 1e-6)
        # 6. Shifting every position leaves the output unchanged (§3: RoPE is relative).
        ls = forward(cfg, W, ids, position_offset=11)
        check(f"[{cname}] position-shift invariance", (ls - logits).abs().max().item(), 1e-10)
        # 7. Rows are independent: row 1 alone gives the same logits.
        l1 = forward(cfg, W, ids[1:])
        check(f"[{cname}] batch rows independent", (l1[0] - logits[1]).abs().max().item(), 1e-12)
        # 8. Autograd gradients against central differences on a few entries of every tensor.
        _, loss, grads = loss_and_grads(cfg, W, ids)
        if set(grads) != set(expected_shapes(cfg)):
            failures.append(f"[{cname}] gradient names")
        worst, worst_name = 0.0, ""
        for name, t in W.items():
            for _ in range(2):
                j = int(torch.randint(0, t.numel(), (1,), generator=gen))
                h = 1e-6
                tp, tm = dict(W), dict(W)
                tp[name] = t.clone().reshape(-1)
                tp[name][j] += h
                tp[name] = tp[name].reshape(t.shape)
                tm[name] = t.clone().reshape(-1)
                tm[name][j] -= h
                tm[name] = tm[name].reshape(t.shape)
                fp = -next_token_logprobs(forward(cfg, tp, ids), ids).mean()
                fm = -next_token_logprobs(forward(cfg, tm, ids), ids).mean()
                fd = ((fp - fm) / (2 * h)).item()
                ad = grads[name].reshape(-1)[j].item()
                err = abs(fd - ad) / max(grads[name].abs().max().item(), 1e-8)
                if err > worst:
                    worst, worst_name = err, name
        check(f"[{cname}] autograd vs finite diff ({worst_name.split('.', 3)[-1]})", worst, 1e-6)
        # 9. score() agrees with the loss of a single row.
        lp, sl = score(cfg, W, ids[0])
        _, loss0, _ = loss_and_grads(cfg, W, ids[:1])
        check(f"[{cname}] score loss == row loss", abs(sl.item() - loss0.item()), 1e-12)

    # 10. At initialisation-like scale the loss is close to log(V).
    cfg = tiny_config()
    W = random_params(cfg, gen, scale=0.02)
    ids = torch.randint(0, cfg["vocab_size"], (2, 9), generator=gen)
    _, loss, _ = loss_and_grads(cfg, W, ids)
    check("small-weight loss ≈ log V", abs(loss.item() - math.log(cfg["vocab_size"])), 0.1)

    if failures:
        print(f"reference self-test FAILED: {failures}")
        return 1
    print("reference self-test passed")
    return 0


if __name__ == "__main__":
    if "--selftest" in sys.argv:
        sys.exit(selftest())
    print(__doc__)
