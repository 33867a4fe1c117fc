"""Independent reference forward passes for GPT-2, Llama and GPT-NeoX, in float64 PyTorch.

Written from the Hugging Face model definitions (not from patchsweep's C code): GPT-2 with
Conv1D weights [in, out], LayerNorm, gelu_new, learned positions; Llama with RMSNorm, rotary
embedding in the rotate-half layout, grouped-query attention and a SwiGLU MLP; GPT-NeoX with the
fused query_key_value viewed as [T, heads, 3 * d_head], rotary on the leading rotary_pct of each
head, exact GELU and the parallel residual (the MLP reads the block input).

Every function returns the logits and a dict of the activations patchsweep caches, named
"L{layer}.{site}", each [T, dims] except the pattern [heads, T, T].

Hooks: `patch(name, tensor) -> tensor` is called on every activation as it is produced, so the
same code runs patched forward passes for the exact-effect references.

Gradients: with `grad=True` the embedding output requires grad and every activation (and the
attention pattern) retains its gradient, so after `metric.backward()` acts[name].grad is
dL/d(activation). `drop=l` is GradDrop: layer l's attention and MLP outputs enter the residual
stream detached, so the forward values are unchanged and no gradient flows through those writes.
"""
import math

import torch

torch.set_default_dtype(torch.float64)


def _identity(name, x):
    return x


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def causal_attention(q, k, v, n_rep):
    """q [H, T, dh], k/v [Hkv, T, dh] -> z [T, H*dh], pattern [H, T, T]"""
    H, T, dh = q.shape
    k = k.repeat_interleave(n_rep, dim=0)
    v = v.repeat_interleave(n_rep, dim=0)
    scores = q @ k.transpose(1, 2) / math.sqrt(dh)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float("-inf"))
    pattern = torch.softmax(scores, dim=-1)
    z = (pattern @ v).transpose(0, 1).reshape(T, H * dh)
    return z, pattern


def heads(x, n, dh):
    """[T, n*dh] -> [n, T, dh]"""
    return x.reshape(x.shape[0], n, dh).transpose(0, 1)


def rotate_half(x, positions, theta, rot):
    """HF Llama/NeoX rotary embedding on the first `rot` dims of x [n, T, dh]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    angles = positions[:, None].double() * inv_freq[None, :]
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1)
    xr, xpass = x[..., :rot], x[..., rot:]
    x1, x2 = xr[..., : rot // 2], xr[..., rot // 2 :]
    rotated = torch.cat([-x2, x1], dim=-1)
    return torch.cat([xr * cos + rotated * sin, xpass], dim=-1)


def _keeper(acts, patch, grad):
    def keep(name, x):
        x = patch(name, x)
        if grad and x.requires_grad:
            x.retain_grad()
        acts[name] = x
        return x
    return keep


def _cut(x, on):
    return x.detach() if on else x


def gpt2_forward(W, cfg, tokens, noise=None, patch=_identity, grad=False, drop=-1):
    d, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    dh, eps, T = d // H, cfg.get("layer_norm_epsilon", 1e-5), len(tokens)
    pre = "transformer." if "transformer.wte.weight" in W else ""
    w = lambda name: W[pre + name]
    acts = {}
    keep = _keeper(acts, patch, grad)

    x = w("wte.weight")[tokens] + w("wpe.weight")[:T]
    if noise is not None:
        x = x + noise
    if grad:
        x = x.detach().requires_grad_()
    for l in range(L):
        p = f"h.{l}."
        x = keep(f"L{l}.resid_pre", x)
        h = layer_norm(x, w(p + "ln_1.weight"), w(p + "ln_1.bias"), eps)
        qkv = h @ w(p + "attn.c_attn.weight") + w(p + "attn.c_attn.bias")
        q = keep(f"L{l}.q", qkv[:, :d])
        k = keep(f"L{l}.k", qkv[:, d : 2 * d])
        v = keep(f"L{l}.v", qkv[:, 2 * d :])
        acts[f"L{l}.q_rot"], acts[f"L{l}.k_rot"] = q, k
        z, pattern = causal_attention(heads(q, H, dh), heads(k, H, dh), heads(v, H, dh), 1)
        if grad:
            pattern.retain_grad()
        acts[f"L{l}.pattern"] = pattern
        z = keep(f"L{l}.z", z)
        attn_out = keep(f"L{l}.attn_out", z @ w(p + "attn.c_proj.weight") + w(p + "attn.c_proj.bias"))
        mid = keep(f"L{l}.resid_mid", x + _cut(attn_out, l == drop))
        h2 = layer_norm(mid, w(p + "ln_2.weight"), w(p + "ln_2.bias"), eps)
        mlp_post = keep(f"L{l}.mlp_post", gelu_new(h2 @ w(p + "mlp.c_fc.weight") + w(p + "mlp.c_fc.bias")))
        mlp_out = keep(f"L{l}.mlp_out", mlp_post @ w(p + "mlp.c_proj.weight") + w(p + "mlp.c_proj.bias"))
        x = keep(f"L{l}.resid_post", mid + _cut(mlp_out, l == drop))
    final = layer_norm(x, w("ln_f.weight"), w("ln_f.bias"), eps)
    unembed = W["lm_head.weight"] if "lm_head.weight" in W else w("wte.weight")
    return final @ unembed.T, acts


def llama_forward(W, cfg, tokens, noise=None, patch=_identity, grad=False, drop=-1):
    d, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    Hkv = cfg.get("num_key_value_heads", H)
    dh, eps, T = d // H, cfg.get("rms_norm_eps", 1e-6), len(tokens)
    theta = cfg.get("rope_theta", 10000.0)
    positions = torch.arange(T)
    acts = {}
    keep = _keeper(acts, patch, grad)

    x = W["model.embed_tokens.weight"][tokens]
    if noise is not None:
        x = x + noise
    if grad:
        x = x.detach().requires_grad_()
    for l in range(L):
        p = f"model.layers.{l}."
        x = keep(f"L{l}.resid_pre", x)
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = keep(f"L{l}.q", h @ W[p + "self_attn.q_proj.weight"].T)
        k = keep(f"L{l}.k", h @ W[p + "self_attn.k_proj.weight"].T)
        v = keep(f"L{l}.v", h @ W[p + "self_attn.v_proj.weight"].T)
        qr = rotate_half(heads(q, H, dh), positions, theta, dh)
        kr = rotate_half(heads(k, Hkv, dh), positions, theta, dh)
        acts[f"L{l}.q_rot"] = qr.transpose(0, 1).reshape(T, H * dh)
        acts[f"L{l}.k_rot"] = kr.transpose(0, 1).reshape(T, Hkv * dh)
        z, pattern = causal_attention(qr, kr, heads(v, Hkv, dh), H // Hkv)
        if grad:
            pattern.retain_grad()
        acts[f"L{l}.pattern"] = pattern
        z = keep(f"L{l}.z", z)
        attn_out = keep(f"L{l}.attn_out", z @ W[p + "self_attn.o_proj.weight"].T)
        mid = keep(f"L{l}.resid_mid", x + _cut(attn_out, l == drop))
        h2 = rms_norm(mid, W[p + "post_attention_layernorm.weight"], eps)
        gate = h2 @ W[p + "mlp.gate_proj.weight"].T
        up = h2 @ W[p + "mlp.up_proj.weight"].T
        mlp_post = keep(f"L{l}.mlp_post", torch.nn.functional.silu(gate) * up)
        mlp_out = keep(f"L{l}.mlp_out", mlp_post @ W[p + "mlp.down_proj.weight"].T)
        x = keep(f"L{l}.resid_post", mid + _cut(mlp_out, l == drop))
    final = rms_norm(x, W["model.norm.weight"], eps)
    unembed = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    return final @ unembed.T, acts


def neox_forward(W, cfg, tokens, noise=None, patch=_identity, grad=False, drop=-1):
    d, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    dh, eps, T = d // H, cfg.get("layer_norm_eps", 1e-5), len(tokens)
    rot = int(dh * cfg.get("rotary_pct", 0.25))
    theta = cfg.get("rotary_emb_base", 10000.0)
    parallel = cfg.get("use_parallel_residual", True)
    act = gelu_erf if cfg.get("hidden_act", "gelu") == "gelu" else gelu_new
    positions = torch.arange(T)
    acts = {}
    keep = _keeper(acts, patch, grad)

    x = W["gpt_neox.embed_in.weight"][tokens]
    if noise is not None:
        x = x + noise
    if grad:
        x = x.detach().requires_grad_()
    for l in range(L):
        p = f"gpt_neox.layers.{l}."
        x = keep(f"L{l}.resid_pre", x)
        h = layer_norm(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], eps)
        qkv = h @ W[p + "attention.query_key_value.weight"].T + W[p + "attention.query_key_value.bias"]
        qkv = qkv.reshape(T, H, 3 * dh)  # Hugging Face's view: head by head, then q | k | v
        q = keep(f"L{l}.q", qkv[:, :, :dh].reshape(T, d))
        k = keep(f"L{l}.k", qkv[:, :, dh : 2 * dh].reshape(T, d))
        v = keep(f"L{l}.v", qkv[:, :, 2 * dh :].reshape(T, d))
        qr = rotate_half(heads(q, H, dh), positions, theta, rot)
        kr = rotate_half(heads(k, H, dh), positions, theta, rot)
        acts[f"L{l}.q_rot"] = qr.transpose(0, 1).reshape(T, d)
        acts[f"L{l}.k_rot"] = kr.transpose(0, 1).reshape(T, d)
        z, pattern = causal_attention(qr, kr, heads(v, H, dh), 1)
        if grad:
            pattern.retain_grad()
        acts[f"L{l}.pattern"] = pattern
        z = keep(f"L{l}.z", z)
        attn_out = keep(f"L{l}.attn_out", z @ W[p + "attention.dense.weight"].T + W[p + "attention.dense.bias"])
        mid = keep(f"L{l}.resid_mid", x + _cut(attn_out, l == drop))
        h2 = layer_norm(x if parallel else mid, W[p + "post_attention_layernorm.weight"],
                        W[p + "post_attention_layernorm.bias"], eps)
        pre = h2 @ W[p + "mlp.dense_h_to_4h.weight"].T + W[p + "mlp.dense_h_to_4h.bias"]
        mlp_post = keep(f"L{l}.mlp_post", act(pre))
        mlp_out = keep(f"L{l}.mlp_out", mlp_post @ W[p + "mlp.dense_4h_to_h.weight"].T + W[p + "mlp.dense_4h_to_h.bias"])
        # x + attn_out + mlp_out, summed through resid_mid (the same sum; resid_mid can be patched)
        x = keep(f"L{l}.resid_post", mid + _cut(mlp_out, l == drop))
    final = layer_norm(x, W["gpt_neox.final_layer_norm.weight"], W["gpt_neox.final_layer_norm.bias"], eps)
    unembed = W["embed_out.weight"] if "embed_out.weight" in W else W["gpt_neox.embed_in.weight"]
    return final @ unembed.T, acts


def forward(W, cfg, tokens, noise=None, patch=_identity, grad=False, drop=-1):
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    fn = {"gpt2": gpt2_forward, "llama": llama_forward, "gpt_neox": neox_forward}[cfg["model_type"]]
    return fn(W, cfg, tokens, noise, patch, grad, drop)


def metric_value(logits, kind, answer, wrong, clean_lp):
    """The job metrics at the last position (a differentiable torch scalar)."""
    lp = torch.log_softmax(logits[-1], dim=-1)
    if kind == "logit_diff":
        return logits[-1, answer] - logits[-1, wrong]
    if kind == "logprob":
        return lp[answer]
    if kind == "prob":
        return lp[answer].exp()
    return (clean_lp.exp() * (clean_lp - lp)).sum()


def activation_grads(W, cfg, tokens, kind, answer, wrong, clean_lp, noise=None, drop=-1):
    """dL/d(activation) for every activation and the pattern, at the run of `tokens`."""
    logits, acts = forward(W, cfg, tokens, noise, grad=True, drop=drop)
    metric_value(logits, kind, answer, wrong, clean_lp).backward()
    return {k: (v.grad if v.grad is not None else torch.zeros_like(v)) for k, v in acts.items()
            if v.requires_grad and not k.endswith("_rot")}, acts


def load_model(folder):
    """Reads a model folder (single file or shards) into float64 torch tensors."""
    import json
    import os

    from safetensors_io import read

    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    W = {}
    for name in files:
        for key, array in read(os.path.join(folder, name)).items():
            if array.dtype.kind == "f":
                W[key] = torch.from_numpy(array.astype("float64"))
    return W, cfg
