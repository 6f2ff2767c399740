"""End-to-end check of the C++ engine against the float64 PyTorch reference (transxssm_ref.py).

    /usr/bin/python3 compare_engine.py --binary build/transxssm [--keep DIR] [--seed S] [--only SUBSTR]

For each of the six named architectures (spec §7) and a few random small configurations it
  1. runs `transxssm init` and checks the resolved config.json (§1, §7, §9), the tensor names and shapes
     (§9) and the initial values (§8: statistics, exact ones, A_log and dt ranges, determinism);
  2. runs `transxssm grads` and `transxssm score` on random token rows, on the initial checkpoint and on
     a checkpoint written here with random non-default values in every tensor, and compares logits, loss,
     every parameter gradient and the score log-probabilities with the reference computed in float64 from
     the same F32 (or BF16) weights: relative error max|engine − ref| / max|ref| ≤ 1e-4 per tensor
     (for ill-conditioned gradients: ≤ 10× the error of a float32 run of the reference, see COND_FACTOR);
  3. for the first case, also edge shapes (3 rows of 2 tokens) and bad inputs (ids out of range, ragged
     rows, inconsistent configs, a checkpoint missing tensors), which must be refused with an error message.
Prints a table of the worst errors and exits 1 with the list of failures if anything is off.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import safetensors_io  # noqa: E402
import transxssm_ref as ref  # noqa: E402

TOL = 1e-4
# A gradient that is a cancellation of much larger terms (A_log at initialisation: ~1e-7 from terms
# ~1e-4) cannot be had to 1e-4 in fp32 by any formulation. For such tensors the tolerance becomes
# COND_FACTOR × the error of a plain float32 evaluation of the reference (recurrent and quadratic scan),
# i.e. the engine must be about as accurate as fp32 allows. Well-conditioned tensors keep 1e-4.
COND_FACTOR = 10.0
# A gradient that is exactly zero in the reference must be below this fraction of the largest gradient.
ZERO_TOL = 1e-6
ARCH_TABLE = {  # spec §7: (SSM position, attention position); None where the table has "—"
    "transxssm": ("rope", "rope"),
    "transformer": (None, "rope"),
    "mamba2": (None, None),
    "jamba": (None, "none"),
    "hybrid-conv": ("conv", "rope"),
    "hybrid-nope": ("none", "rope"),
}
CONFIG_FIELDS = ["model_type", "arch", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "head_dim", "ssm_state_size", "layer_types",
                 "attn_layer_period", "attn_layer_offset", "ssm_position", "attention_position",
                 "ssm_chunk_size", "conv_kernel", "rope_theta", "rms_norm_eps", "residual_scale", "use_dt_bias",
                 "tie_word_embeddings", "initializer_range", "max_position_embeddings", "mamba_expand",
                 "mamba_head_dim", "mamba_d_state", "mamba_n_groups", "mamba_norm_eps"]


class Failures:
    """Every failure is kept; the first few of each case are printed as they happen and in the summary."""
    SHOW = 8

    def __init__(self):
        self.items = []
        self.per_case = {}

    def add(self, case, what):
        self.items.append((case, what))
        self.per_case[case] = self.per_case.get(case, 0) + 1
        if self.per_case[case] <= self.SHOW:
            print(f"    FAIL {what}")

    def summary(self):
        lines = []
        for case, count in self.per_case.items():
            mine = [w for c, w in self.items if c == case]
            lines += [f"  [{case}] {w}" for w in mine[:self.SHOW]]
            if count > self.SHOW:
                lines.append(f"  [{case}] ... and {count - self.SHOW} more")
        return lines

    def check(self, case, ok, what):
        if not ok:
            self.add(case, what)
        return ok


# ----------------------------------------------------------------------------------------------------
# Test cases

def named_cases():
    """The six architectures at a tiny size; 8 layers for the hybrids so one full period is present."""
    common = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                  num_key_value_heads=2, ssm_state_size=16, ssm_chunk_size=8, mamba_head_dim=16,
                  mamba_d_state=16, max_position_embeddings=64)
    cases = []
    for arch in ARCH_TABLE:
        layers = 2 if arch in ("transformer", "mamba2") else 8
        cases.append(dict(name=arch, arch=arch, over=dict(common, num_hidden_layers=layers), T=21, seed=11))
    return cases


def random_cases(seed):
    """Small random configurations; the flag combinations are fixed so that every option is covered."""
    rng = random.Random(seed)
    flags = [  # arch, tie, residual_scale, use_dt_bias, kv heads (0: = heads), layout
        ("transxssm", False, True, True, 2, "period"),
        ("hybrid-conv", True, False, False, 0, "period"),
        ("transxssm", False, False, True, 1, "mixed"),
        ("jamba", True, True, False, 2, "period"),
        ("hybrid-nope", False, True, False, 1, "period"),
        ("transformer", False, False, True, 2, "all"),
    ]
    cases = []
    for k, (arch, tie, res, dtb, gqa, layout) in enumerate(flags):
        d = rng.choice([32, 48, 64])
        H = 4 if gqa == 2 else rng.choice([2, 4])  # kv 2 of 4 heads: the query→kv head mapping matters
        P = d // H
        kv = gqa if gqa else H
        over = dict(vocab_size=rng.randint(64, 300), hidden_size=d, intermediate_size=8 * rng.randint(4, 20),
                    num_attention_heads=H, num_key_value_heads=kv,
                    ssm_state_size=P if k % 2 == 0 else P // 2,
                    ssm_chunk_size=rng.choice([4, 8]), mamba_head_dim=16, mamba_d_state=16,
                    max_position_embeddings=64, tie_word_embeddings=tie, residual_scale=res, use_dt_bias=dtb)
        if k == 4:
            del over["ssm_chunk_size"]  # the preset's chunk (spec default 256 > T): one partial chunk
        layers = rng.randint(2, 9)
        if layout == "period":
            offset = rng.randint(0, min(3, layers - 1))
            if layers <= 1 + offset:
                layers = offset + 2  # at least one SSM layer after the first attention one
            over.update(num_hidden_layers=layers, attn_layer_period=4, attn_layer_offset=offset)
        elif layout == "mixed":
            types = ["ssd", "attention", "mamba2"] + [rng.choice(["ssd", "attention", "mamba2"])
                                                      for _ in range(layers - 3 if layers > 3 else 0)]
            rng.shuffle(types)
            over.update(num_hidden_layers=len(types), layer_types=types)
        else:
            over.update(num_hidden_layers=layers)
        cases.append(dict(name=f"random{k}-{arch}", arch=arch, over=over, T=rng.choice([21, 16, 13]),
                          seed=rng.randint(1, 10 ** 6)))
    return cases


# ----------------------------------------------------------------------------------------------------
# Engine driving

class Engine:
    def __init__(self, binary):
        self.binary = binary
        self.env = dict(os.environ)
        self.env.setdefault("OMP_NUM_THREADS", "2")
        self.seconds = 0.0

    def run(self, *args):
        t0 = time.time()
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env)
        self.seconds += time.time() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
            raise RuntimeError(f"`transxssm {' '.join(args)}` exited {proc.returncode}: {tail}")
        return proc.stdout

    def expect_error(self, *args):
        """Runs a command that must be refused: non-zero exit, no crash (signal), an `error:` message."""
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env)
        if proc.returncode == 0:
            return "accepted"
        if proc.returncode < 0 or proc.returncode > 128:
            return f"crashed (exit {proc.returncode})"
        if "error" not in proc.stderr.lower():
            return f"exit {proc.returncode} without an error message: {proc.stderr.strip()[-200:]!r}"
        return None

    def init(self, cfg_path, seed, out):
        self.run("init", "--config", cfg_path, "--seed", str(seed), "--out", out)

    def grads(self, model, ids_path, out):
        self.run("grads", "--model", model, "--ids", ids_path, "--out", out)
        tensors, _ = safetensors_io.load(out)
        return tensors

    def score(self, model, ids_path):
        out = self.run("score", "--model", model, "--ids", ids_path)
        for line in reversed(out.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"`transxssm score` printed no JSON object: {out[-300:]!r}")


def rel_err(engine, reference):
    engine = engine.to(torch.float64).reshape(-1)
    reference = reference.to(torch.float64).reshape(-1)
    if engine.shape != reference.shape:
        return math.inf
    if not torch.isfinite(engine).all():
        return math.inf
    scale = reference.abs().max().item() if reference.numel() else 0.0
    diff = (engine - reference).abs().max().item() if reference.numel() else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


# ----------------------------------------------------------------------------------------------------
# Checks of `init`

def check_config(case, cfg, fails):
    """The resolved config.json: every field present, overrides kept, presets and layer layout of §1/§7."""
    name, arch, over = case["name"], case["arch"], case["over"]
    missing = [f for f in CONFIG_FIELDS if f not in cfg]
    if not fails.check(name, not missing, f"config.json lacks fields {missing}"):
        return False
    fails.check(name, cfg["model_type"] == "transxssm", f"model_type {cfg['model_type']!r}")
    fails.check(name, cfg["arch"] == arch, f"arch {cfg['arch']!r} != {arch!r}")
    for key, want in over.items():
        fails.check(name, cfg[key] == want, f"config {key} = {cfg[key]!r}, asked {want!r}")
    fails.check(name, cfg["head_dim"] * cfg["num_attention_heads"] == cfg["hidden_size"],
                f"head_dim {cfg['head_dim']} != hidden/heads")
    fails.check(name, isinstance(cfg["layer_types"], list) and len(cfg["layer_types"]) == cfg["num_hidden_layers"],
                "layer_types is not an explicit list of num_hidden_layers entries")
    L = cfg["num_hidden_layers"]
    if "layer_types" in over:
        want_types = over["layer_types"]
    elif arch == "transformer":
        want_types = ["attention"] * L
    elif arch == "mamba2":
        want_types = ["mamba2"] * L
    else:
        per, off = over.get("attn_layer_period", 8), over.get("attn_layer_offset", 4 if arch == "jamba" else 7)
        fails.check(name, (cfg["attn_layer_period"], cfg["attn_layer_offset"]) == (per, off),
                    f"attn period/offset {(cfg['attn_layer_period'], cfg['attn_layer_offset'])}, want {(per, off)}")
        other = "mamba2" if arch == "jamba" else "ssd"
        want_types = ["attention" if i % per == off else other for i in range(L)]
    fails.check(name, cfg["layer_types"] == want_types, f"layer_types {cfg['layer_types']} != {want_types}")
    ssm_pos, attn_pos = ARCH_TABLE[arch]
    if ssm_pos is not None:
        fails.check(name, cfg["ssm_position"] == ssm_pos, f"ssm_position {cfg['ssm_position']!r} != {ssm_pos!r}")
    if attn_pos is not None:
        fails.check(name, cfg["attention_position"] == attn_pos,
                    f"attention_position {cfg['attention_position']!r} != {attn_pos!r}")
    for key, want in (("conv_kernel", 4), ("mamba_expand", 2), ("mamba_n_groups", 1), ("mamba_norm_eps", 1e-5)):
        fails.check(name, cfg[key] == want, f"{key} = {cfg[key]!r}, spec default {want!r}")
    for key, want in (("residual_scale", True), ("use_dt_bias", True), ("tie_word_embeddings", True)):
        if key not in over:
            fails.check(name, cfg[key] == want, f"{key} = {cfg[key]!r}, spec default {want!r}")
    return True


def check_names(case, cfg, tensors, fails):
    want = ref.expected_shapes(cfg)
    have = {k: list(v.shape) for k, v in tensors.items()}
    extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
    fails.check(case, not extra, f"checkpoint has tensors the spec does not name: {extra[:6]}")
    fails.check(case, not missing, f"checkpoint lacks tensors: {missing[:6]}")
    bad = [f"{k} {have[k]} != {want[k]}" for k in sorted(set(have) & set(want)) if have[k] != want[k]]
    fails.check(case, not bad, f"tensor shapes: {bad[:4]}")
    return not extra and not missing and not bad


def check_init(case, cfg, tensors, fails):
    """Spec §8: Linear/embedding ~ N(0, initializer_range); gains, residual scales, D = 1; A_log =
    log U[1,16]; softplus(dt_bias) = dt ∈ [1e-4, 0.1] (log-uniform on [1e-3, 1e-1])."""
    sigma = cfg["initializer_range"]
    linear, a_log, dt = [], [], []
    for name, t in tensors.items():
        t = t.to(torch.float64)
        if not fails.check(case, torch.isfinite(t).all().item(), f"init {name} not finite"):
            continue
        if name.endswith("_proj.weight") or name in ("model.word_embed.weight", "lm_head.weight"):
            n = t.numel()
            rms, mean = t.pow(2).mean().sqrt().item(), t.mean().item()
            fails.check(case, abs(rms / sigma - 1) <= 6 / math.sqrt(2 * n) + 1e-3,
                        f"init {name}: std {rms:.5f}, want {sigma} (n={n})")
            fails.check(case, abs(mean) <= 6 * sigma / math.sqrt(n), f"init {name}: mean {mean:.2e}")
            linear.append((name, t.reshape(-1)))
        elif name.endswith("layernorm.weight") or name.endswith("residual.weight") or name.endswith("norm.weight") \
                or name.endswith(".D"):
            fails.check(case, (t == 1).all().item(), f"init {name} is not all ones")
        elif name.endswith("A_log"):
            fails.check(case, t.min().item() >= -1e-6 and t.max().item() <= math.log(16) + 1e-6,
                        f"init {name} outside [0, log 16]: [{t.min().item():.4f}, {t.max().item():.4f}]")
            a_log.append(t)
        elif name.endswith("dt_bias"):
            v = torch.nn.functional.softplus(t)
            fails.check(case, v.min().item() >= 1e-4 * (1 - 1e-4) and v.max().item() <= 0.1 * (1 + 1e-4),
                        f"init {name}: softplus(dt_bias) outside [1e-4, 0.1]: [{v.min():.3e}, {v.max():.3e}]")
            dt.append(v)
        elif "conv1d" in name:
            # §4/§6 do not fix the conv initialisation (Mamba-2 uses PyTorch's U(±1/sqrt(K))); only sanity.
            fails.check(case, t.abs().max().item() <= 1.0 and t.abs().max().item() > 0,
                        f"init {name}: |values| not in (0, 1]")
        else:
            fails.add(case, f"init: no rule for tensor {name}")
    # Pooled statistics: tight bounds on the std, and normality (kurtosis 3; a uniform would give 1.8).
    pooled = torch.cat([t for _, t in linear])
    n = pooled.numel()
    rms = pooled.pow(2).mean().sqrt().item()
    kurt = (pooled.pow(4).mean() / pooled.pow(2).mean() ** 2).item()
    fails.check(case, abs(rms / sigma - 1) <= 6 / math.sqrt(2 * n) + 1e-3, f"init pooled Linear std {rms:.5f}")
    fails.check(case, abs(kurt - 3) <= 6 * math.sqrt(24 / n), f"init pooled Linear kurtosis {kurt:.3f} (normal: 3)")
    # Independent draws: no two same-shaped tensors correlated (a reused seed or stream would show here).
    for i in range(len(linear)):
        for j in range(i + 1, len(linear)):
            a, b = linear[i][1], linear[j][1]
            if a.numel() == b.numel():
                rho = (a @ b / (a.norm() * b.norm())).item()
                fails.check(case, abs(rho) <= 6 / math.sqrt(a.numel()) + 1e-3,
                            f"init {linear[i][0]} and {linear[j][0]} correlated ({rho:.3f})")
    if a_log:
        a = torch.exp(torch.cat(a_log))
        if a.numel() >= 4:
            fails.check(case, a.std().item() > 0, "init A_log all equal")
            fails.check(case, abs(a.mean().item() - 8.5) <= 6 * 4.33 / math.sqrt(a.numel()),
                        f"init exp(A_log) mean {a.mean().item():.2f}, U[1,16] gives 8.5")
    if dt:
        logdt = torch.log(torch.cat(dt))
        mid = 0.5 * (math.log(1e-3) + math.log(1e-1))
        if logdt.numel() >= 4:
            fails.check(case, abs(logdt.mean().item() - mid) <= 6 * 1.33 / math.sqrt(logdt.numel()),
                        f"init log dt mean {logdt.mean().item():.2f}, log-uniform on [1e-3, 0.1] gives {mid:.2f}")


# ----------------------------------------------------------------------------------------------------
# Gradient / score comparison

def compare(case, tag, engine, model_dir, cfg, params, ids, work, fails):
    """Runs grads + score on model_dir and compares with the reference on params (float64 of the weights
    on disk). Returns a result row for the table."""
    ids_path = os.path.join(work, "ids.json")
    with open(ids_path, "w") as f:
        json.dump(ids.tolist(), f)
    row = dict(case=case, tag=tag, logits=math.nan, loss=math.nan, grad=math.nan, grad_name="", grad_tol=TOL,
               relaxed=0, score=math.nan)
    logits, loss, grads = ref.loss_and_grads(cfg, params, ids)
    # How well each gradient is conditioned: the error of plain float32 runs of the reference.
    _, _, g32r = ref.loss_and_grads(cfg, params, ids, dtype=torch.float32)
    _, _, g32q = ref.loss_and_grads(cfg, params, ids, dtype=torch.float32, scan=ref.ssd_scan_quadratic)
    tol = {k: max(TOL, COND_FACTOR * max(rel_err(g32r[k], grads[k]), rel_err(g32q[k], grads[k]))) for k in grads}
    try:
        got = engine.grads(model_dir, ids_path, os.path.join(work, "grads.safetensors"))
    except RuntimeError as e:
        fails.add(case, f"{tag}: {e}")
        return row
    label = tag
    fails.check(case, all(t.dtype == torch.float32 for t in got.values()), f"{label}: grads output is not all F32")
    if fails.check(case, "logits" in got and "loss" in got, f"{label}: grads output lacks logits/loss"):
        fails.check(case, list(got["logits"].shape) == list(logits.shape),
                    f"{label}: logits shape {list(got['logits'].shape)} != {list(logits.shape)}")
        row["logits"] = rel_err(got["logits"], logits)
        row["loss"] = rel_err(got["loss"].reshape(-1)[:1], loss.reshape(1))
        fails.check(case, got["loss"].numel() == 1, f"{label}: loss has {got['loss'].numel()} elements")
        fails.check(case, row["logits"] <= TOL, f"{label}: logits rel err {row['logits']:.2e}")
        fails.check(case, row["loss"] <= TOL, f"{label}: loss rel err {row['loss']:.2e} "
                    f"(engine {got['loss'].reshape(-1)[0].item():.6f}, ref {loss.item():.6f})")
    names = set(got) - {"logits", "loss"}
    fails.check(case, names == set(params),
                f"{label}: gradient names differ from parameters: extra {sorted(names - set(params))[:4]}, "
                f"missing {sorted(set(params) - names)[:4]}")
    worst, worst_name = 0.0, ""
    scale = max(g.abs().max().item() for g in grads.values())
    for name in sorted(names & set(params)):
        same_shape = list(got[name].shape) == list(grads[name].shape)
        e = rel_err(got[name], grads[name]) if same_shape else math.inf
        if same_shape and grads[name].abs().max().item() <= 1e-12 * scale:
            # Structurally zero gradient (e.g. A_log or k_proj when only position 0 is predicted): the
            # engine's value must be rounding noise, measured against the largest gradient of the model.
            z = got[name].abs().max().item() / scale
            fails.check(case, z <= ZERO_TOL, f"{label}: grad {name} should be 0, max|engine| = {z:.1e} of the "
                        f"largest gradient")
            continue
        fails.check(case, e <= tol[name], f"{label}: grad {name} rel err {e:.2e} > tol {tol[name]:.1e} "
                    f"(max|ref| {grads[name].abs().max().item():.2e})")
        if e / tol[name] >= worst / (tol.get(worst_name, TOL)):
            worst, worst_name = e, name
    row["grad"], row["grad_name"], row["grad_tol"] = worst, worst_name, tol.get(worst_name, TOL)
    row["relaxed"] = sum(1 for k in names & set(params) if tol[k] > TOL)
    # score takes one flat row per call: the first row on the initial weights, the last on the random ones.
    worst_score = 0.0
    for b in [0 if tag == "init" else ids.shape[0] - 1]:
        with open(ids_path, "w") as f:
            json.dump(ids[b].tolist(), f)
        try:
            out = engine.score(model_dir, ids_path)
        except RuntimeError as e:
            fails.add(case, f"{tag}: {e}")
            return row
        lp, sl = ref.score(cfg, params, ids[b])
        got_lp = torch.tensor(out.get("logprobs", []), dtype=torch.float64)
        e = rel_err(got_lp, lp)
        fails.check(case, e <= TOL, f"{label}: score row {b} logprobs rel err {e:.2e} "
                    f"({got_lp.numel()} values, want {lp.numel()})")
        el = abs(out.get("loss", math.nan) - sl.item()) / abs(sl.item())
        fails.check(case, el <= TOL, f"{label}: score row {b} loss {out.get('loss')} != {sl.item():.6f}")
        worst_score = max(worst_score, e, el)
    row["score"] = worst_score
    return row


def write_checkpoint(directory, cfg, tensors, dtype):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    safetensors_io.save(os.path.join(directory, "model.safetensors"),
                        {k: v.to(dtype) for k, v in tensors.items()}, {"format": "pt"})


# ----------------------------------------------------------------------------------------------------

def run_case(case, engine, work, fails, rows, extras):
    name = case["name"]
    print(f"== {name}: T={case['T']} {json.dumps(case['over'], separators=(',', ':'))}")
    cdir = os.path.join(work, name)
    os.makedirs(cdir, exist_ok=True)
    cfg_path = os.path.join(cdir, "request.json")
    with open(cfg_path, "w") as f:
        json.dump(dict(arch=case["arch"], size="tiny", **case["over"]), f)
    init_dir = os.path.join(cdir, "init")
    try:
        engine.init(cfg_path, case["seed"], init_dir)
        cfg, params = ref.load_checkpoint(init_dir)
    except (RuntimeError, OSError, ValueError) as e:
        fails.add(name, f"init: {e}")
        return
    raw, _ = safetensors_io.load(os.path.join(init_dir, "model.safetensors"))
    if not check_config(case, cfg, fails):
        return
    fails.check(name, all(v.dtype == torch.float32 for v in raw.values()), "init tensors are not all F32")
    if not check_names(name, cfg, raw, fails):
        return
    check_init(name, cfg, raw, fails)
    print(f"    layers {''.join({'ssd': 'S', 'attention': 'A', 'mamba2': 'M'}[t] for t in cfg['layer_types'])}, "
          f"{sum(v.numel() for v in raw.values())} parameters; init checks done")
    if extras:
        again = os.path.join(cdir, "init_again")
        other = os.path.join(cdir, "init_other")
        engine.init(cfg_path, case["seed"], again)
        engine.init(cfg_path, case["seed"] + 1, other)
        t_again, _ = safetensors_io.load(os.path.join(again, "model.safetensors"))
        t_other, _ = safetensors_io.load(os.path.join(other, "model.safetensors"))
        fails.check(name, all(torch.equal(raw[k], t_again[k]) for k in raw), "init with the same seed differs")
        fails.check(name, not torch.equal(raw["model.word_embed.weight"], t_other["model.word_embed.weight"]),
                    "init with another seed gives the same embedding")

    gen = torch.Generator().manual_seed(case["seed"])
    ids = torch.randint(0, cfg["vocab_size"], (2, case["T"]), generator=gen)
    rows.append(compare(name, "init", engine, init_dir, cfg, params, ids, cdir, fails))

    # A checkpoint with random non-default values in every tensor (norms, residual scales, A_log, dt_bias,
    # D, conv), larger Linear weights so the nonlinearities matter; stored as F32, or BF16 for one case.
    dtype = torch.bfloat16 if case.get("bf16") else torch.float32
    pert = {k: v.to(dtype) for k, v in ref.random_params(cfg, gen).items()}
    pert_dir = os.path.join(cdir, "perturbed")
    write_checkpoint(pert_dir, cfg, pert, dtype)
    pert64 = {k: v.to(torch.float64) for k, v in pert.items()}
    ids = torch.randint(0, cfg["vocab_size"], (2, case["T"]), generator=gen)
    rows.append(compare(name, "random-bf16" if case.get("bf16") else "random", engine, pert_dir, cfg, pert64,
                        ids, cdir, fails))
    if extras:
        # Edge shapes: three rows of two tokens (one predicted position per row, chunk longer than T).
        ids = torch.randint(0, cfg["vocab_size"], (3, 2), generator=gen)
        rows.append(compare(name, "random-T2", engine, pert_dir, cfg, pert64, ids, cdir, fails))
        # Bad token rows are refused with an error message, not a crash.
        bad_inputs = {"id out of range": [[0, cfg["vocab_size"]]], "negative id": [[0, -1, 2]],
                      "ragged rows": [[1, 2, 3], [1, 2]], "single token": [[5]]}
        for what, rows_ in bad_inputs.items():
            path = os.path.join(cdir, "bad.json")
            with open(path, "w") as f:
                json.dump(rows_, f)
            outcome = engine.expect_error("grads", "--model", pert_dir, "--ids", path, "--out",
                                          os.path.join(cdir, "bad.safetensors"))
            fails.check(name, outcome is None, f"grads with {what}: {outcome}")
        # Inconsistent configs and an incomplete checkpoint are refused as well.
        bad_configs = {"heads not dividing hidden": dict(hidden_size=30, num_attention_heads=4),
                       "kv heads not dividing heads": dict(num_attention_heads=4, num_key_value_heads=3),
                       "unknown layer type": dict(num_hidden_layers=2, layer_types=["ssd", "lstm"]),
                       "unknown ssm_position": dict(ssm_position="alibi")}
        for what, change in bad_configs.items():
            path = os.path.join(cdir, "bad_config.json")
            with open(path, "w") as f:
                json.dump(dict(arch=case["arch"], size="tiny", **dict(case["over"], **change)), f)
            outcome = engine.expect_error("init", "--config", path, "--seed", "1", "--out", os.path.join(cdir, "bad"))
            fails.check(name, outcome is None, f"init with {what}: {outcome}")
        broken = os.path.join(cdir, "broken")
        write_checkpoint(broken, cfg, {k: v for k, v in pert.items() if not k.endswith("A_log")}, dtype)
        with open(os.path.join(cdir, "ids.json"), "w") as f:
            json.dump([[1, 2, 3]], f)
        outcome = engine.expect_error("grads", "--model", broken, "--ids", os.path.join(cdir, "ids.json"), "--out",
                                      os.path.join(cdir, "bad.safetensors"))
        fails.check(name, outcome is None, f"grads on a checkpoint without A_log tensors: {outcome}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="path of the transxssm executable")
    ap.add_argument("--seed", type=int, default=2024, help="seed of the random configurations")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one, removed)")
    ap.add_argument("--only", help="run only the cases whose name contains this")
    args = ap.parse_args()
    if not os.path.isfile(args.binary) or not os.access(args.binary, os.X_OK):
        print(f"compare_engine: no executable transxssm at {args.binary}")
        return 1
    torch.set_num_threads(1)
    cases = named_cases() + random_cases(args.seed)
    cases[-2]["bf16"] = True  # one checkpoint stored as BF16 (§9 allows F32 or BF16)
    if args.only:
        cases = [c for c in cases if args.only in c["name"]]
    work = args.keep or tempfile.mkdtemp(prefix="txs_ref_")
    os.makedirs(work, exist_ok=True)
    engine, fails, rows = Engine(args.binary), Failures(), []
    t0 = time.time()
    try:
        for i, case in enumerate(cases):
            try:
                run_case(case, engine, work, fails, rows, extras=(i == 0))
            except RuntimeError as e:
                fails.add(case["name"], str(e))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'case':<22}{'weights':<12}{'logits':>9}{'loss':>9}{'score':>9}{'grad':>9}{'(tol)':>9}  "
          f"{'worst grad tensor (error/tol)':<42}{'relaxed':>8}")
    for r in rows:
        name = r["grad_name"].replace("model.layers.", "L")
        print(f"{r['case']:<22}{r['tag']:<12}{r['logits']:>9.1e}{r['loss']:>9.1e}{r['score']:>9.1e}"
              f"{r['grad']:>9.1e}{r['grad_tol']:>9.0e}  {name[:42]:<42}{r['relaxed']:>8}")
    print(f"(relative error max|engine-ref|/max|ref| per tensor; tolerance {TOL:.0e}, or {COND_FACTOR:g}x the "
          f"error of a float32 run of the reference for the 'relaxed' ill-conditioned gradients; "
          f"{time.time() - t0:.1f}s total, {engine.seconds:.1f}s in the engine)")
    if fails.items:
        print(f"\ncompare_engine: {len(fails.items)} FAILURE(S):")
        for line in fails.summary():
            print(line)
        return 1
    print("compare_engine: engine matches the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
