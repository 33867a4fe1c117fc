"""A job's node catalogue as docs/results.md orders it, and the columns each node owns: shared by
the reference generators and the tests (no PyTorch needed)."""

SITES_WITH_INDEX = {"q", "z", "k", "v", "mlp_post"}


def config_dims(cfg):
    """The sizes a job's node catalogue needs, from a Hugging Face config."""
    if cfg["model_type"] == "gpt2":
        d, H = cfg["n_embd"], cfg["n_head"]
        return dict(L=cfg["n_layer"], d=d, H=H, Hkv=H, dh=d // H, dm=cfg.get("n_inner") or 4 * d,
                    wte="transformer.wte.weight" if "transformer.wte.weight" in cfg else "wte.weight")
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    wte = "gpt_neox.embed_in.weight" if cfg["model_type"] == "gpt_neox" else "model.embed_tokens.weight"
    return dict(L=cfg["num_hidden_layers"], d=d, H=H, Hkv=cfg.get("num_key_value_heads", H), dh=d // H,
                dm=cfg["intermediate_size"], wte=wte)


def nodes_of(job, dims):
    nodes = []
    per_layer = {"q": dims["H"], "z": dims["H"], "k": dims["Hkv"], "v": dims["Hkv"], "mlp_post": dims["dm"]}
    for site in job["nodes"]:
        for layer in range(dims["L"]):
            for i in range(per_layer.get(site, 1)):
                nodes.append((site, layer, i if site in SITES_WITH_INDEX else -1))
    return nodes


def column_slice(site, index, dims):
    if site in ("q", "z", "k", "v"):
        return slice(index * dims["dh"], (index + 1) * dims["dh"])
    if site == "mlp_post":
        return slice(index, index + 1)
    return slice(None)
