"""The GPT-2-small-shaped PyTorch model the PyTorch benchmarks loop over (bench_torch.py for
nodes, bench_edges_torch.py for edges): 12 layers, 12 heads, d_model 768, d_mlp 3072, vocabulary
50257, random weights (normal, std 0.02), float32, one thread. Importing it pins PyTorch and its
BLAS to one core; ImportError where PyTorch is absent."""
import math
import os

# One core: torch.set_num_threads does not reach the BLAS PyTorch calls (Debian's links OpenBLAS,
# which starts a thread per core unless told before it loads).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
import torch  # noqa: E402

L, H, D, DM, V = 12, 12, 768, 3072, 50257
torch.set_num_threads(1)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
        self.qkv, self.out = torch.nn.Linear(D, 3 * D), torch.nn.Linear(D, D)
        self.up, self.down = torch.nn.Linear(D, DM), torch.nn.Linear(DM, D)

    def forward(self, x, hook):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (y.view(b, t, H, D // H).transpose(1, 2) for y in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(1, 2)  # [b, t, H, d_head]: the hook point
        z = hook(z)
        x = x + self.out(z.reshape(b, t, D))
        return x + self.down(torch.nn.functional.gelu(self.up(self.ln2(x)), approximate="tanh"))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(V, D), torch.nn.Embedding(1024, D)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.lnf = torch.nn.LayerNorm(D)

    def forward(self, tokens, hooks, every_position):
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1]))
        for layer, block in enumerate(self.blocks):
            x = block(x, hooks.get(layer, lambda z: z))
        if every_position:  # [b, t, V], as HookedTransformer returns them
            return (self.lnf(x) @ self.wte.weight.T)[:, -1]
        return self.lnf(x[:, -1]) @ self.wte.weight.T


def random_model():
    """The model with seed-0 random weights, and the torch generator left seeded for the prompts."""
    torch.manual_seed(0)
    model = Model()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model
