"""Golden values for TMFTensor's ops, made by PyTorch.

For every case: seeded random inputs, the op's output, and the gradient of
sum(output * upstream) with respect to each input (upstream is a seeded random tensor of the
output's shape). Also Adam/AdamW/SGD steps, the warm-up + cosine schedule and gradient clipping.
Writes Fixtures/ops/ops.json. Run: /work/venv/bin/python Scripts/make_ops_fixtures.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)  # references in float64, compared to float32 in Swift

cases = []


def t(x):
    return {"shape": list(x.shape), "data": [float(v) for v in x.detach().reshape(-1).tolist()]}


def case(name, inputs, fn, params=None, positive=False):
    ins = {}
    tensors = {}
    for k, shape in inputs.items():
        x = torch.randn(*shape)
        if positive:
            x = x.abs() + 0.5
        x = x.float().double().requires_grad_(True)
        tensors[k] = x
        ins[k] = t(x)
    out = fn(*tensors.values()) if len(tensors) == 1 else fn(**tensors)
    up = torch.randn(out.shape).float().double()
    (out * up).sum().backward()
    cases.append({
        "name": name,
        "params": params or {},
        "inputs": ins,
        "output": t(out),
        "upstream": t(up),
        "grads": {k: t(v.grad) for k, v in tensors.items()},
    })


# matmul
case("matmul", {"a": [3, 4], "b": [4, 5]}, lambda a, b: a @ b)
case("matmul_tA", {"a": [4, 3], "b": [4, 5]}, lambda a, b: a.T @ b, {"transposeA": True})
case("matmul_tB", {"a": [3, 4], "b": [5, 4]}, lambda a, b: a @ b.T, {"transposeB": True})
case("matmul_tAtB", {"a": [4, 3], "b": [5, 4]}, lambda a, b: a.T @ b.T, {"transposeA": True, "transposeB": True})
case("matmul_fold", {"a": [2, 3, 4], "b": [5, 4]}, lambda a, b: a @ b.T, {"transposeB": True})
case("matmul_batched", {"a": [2, 3, 4], "b": [2, 4, 5]}, lambda a, b: a @ b)
case("matmul_batched_tB", {"a": [2, 2, 3, 4], "b": [2, 2, 5, 4]}, lambda a, b: a @ b.transpose(-1, -2), {"transposeB": True})
case("matmul_batched_tA", {"a": [2, 4, 3], "b": [2, 4, 5]}, lambda a, b: a.transpose(-1, -2) @ b, {"transposeA": True})
case("matmul_bcast_tA", {"a": [2, 4, 3], "b": [4, 5]}, lambda a, b: a.transpose(-1, -2) @ b, {"transposeA": True})
case("linear", {"x": [2, 3, 4], "w": [5, 4], "bias": [5]}, lambda x, w, bias: F.linear(x, w, bias))

# broadcasting arithmetic
for op, f in [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b)]:
    case(op + "_same", {"a": [2, 3], "b": [2, 3]}, f)
    case(op + "_row", {"a": [2, 3, 4], "b": [4]}, f)
    case(op + "_mixed", {"a": [2, 1, 4], "b": [3, 1]}, f)
    case(op + "_scalar", {"a": [2, 3], "b": [1]}, f)
    case(op + "_lscalar", {"a": [1], "b": [2, 3]}, f)
case("div_same", {"a": [2, 3], "b": [2, 3]}, lambda a, b: a / b, positive=True)
case("div_mixed", {"a": [2, 1, 4], "b": [3, 1]}, lambda a, b: a / b, positive=True)
case("scale", {"x": [2, 3]}, lambda x: x * 2.5, {"s": 2.5})
case("adding", {"x": [2, 3]}, lambda x: x + 1.5, {"s": 1.5})

# reductions
case("sum_axis0", {"x": [3, 4, 2]}, lambda x: x.sum(0), {"axis": 0})
case("sum_axis1_keep", {"x": [3, 4, 2]}, lambda x: x.sum(1, keepdim=True), {"axis": 1, "keepDim": True})
case("mean_last", {"x": [3, 4, 2]}, lambda x: x.mean(-1), {"axis": -1})
case("sum_all", {"x": [3, 4]}, lambda x: x.sum())
case("mean_all", {"x": [3, 4]}, lambda x: x.mean())

# shapes
case("reshape", {"x": [2, 3, 4]}, lambda x: x.reshape(6, 4), {"shape": [6, 4]})
case("permute", {"x": [2, 3, 4]}, lambda x: x.permute(2, 0, 1).contiguous(), {"order": [2, 0, 1]})
case("transpose", {"x": [2, 3, 4]}, lambda x: x.transpose(0, 2).contiguous(), {"d0": 0, "d1": 2})
case("slice", {"x": [3, 5, 2]}, lambda x: x[:, 1:4, :], {"axis": 1, "start": 1, "end": 4})
case("concat", {"a": [2, 3], "b": [2, 2], "c": [2, 1]}, lambda a, b, c: torch.cat([a, b, c], 1), {"axis": 1})
case("split", {"x": [4, 3]}, lambda x: torch.cat([p * (i + 1) for i, p in enumerate(torch.split(x, [1, 3], 0))], 0), {"axis": 0, "sizes": [1, 3]})
idx = [2, 0, 2, 3]
case("gather", {"table": [5, 3]}, lambda table: table[idx], {"indices": idx})
case("scatter_add", {"src": [4, 3]}, lambda src: torch.zeros(5, 3).index_add(0, torch.tensor(idx), src), {"indices": idx, "rows": 5})

# softmax family and masking
case("softmax", {"x": [3, 7]}, lambda x: torch.softmax(x, -1))
case("softmax_wide", {"x": [2, 37]}, lambda x: torch.softmax(x, -1))
case("log_softmax", {"x": [3, 37]}, lambda x: torch.log_softmax(x, -1))
T, S = 3, 5
keymask = [[False, True, True, True, True], [True, True, True, True, True]]
def masked(x):
    causal = torch.ones(T, S, dtype=torch.bool).tril(S - T)
    km = torch.tensor(keymask)[:, None, None, :]
    allowed = causal[None, None] & km
    return torch.softmax(x.masked_fill(~allowed, float("-inf")), -1)
case("masked_softmax", {"x": [2, 2, T, S]}, masked, {"causalOffset": S - T, "keyMask": keymask})

# norms
case("rmsnorm", {"x": [2, 3, 8], "w": [8]}, lambda x, w: (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)) * w, {"eps": 1e-5})
case("layernorm", {"x": [3, 8], "w": [8], "b": [8]}, lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-5), {"eps": 1e-5})

# activations
case("silu", {"x": [4, 9]}, F.silu)
case("silu_wide", {"x": [2, 40]}, F.silu)
case("gelu", {"x": [4, 9]}, F.gelu)
case("gelu_tanh", {"x": [4, 9]}, lambda x: F.gelu(x, approximate="tanh"))
case("quick_gelu", {"x": [4, 9]}, lambda x: x * torch.sigmoid(1.702 * x))
case("exp", {"x": [3, 11]}, torch.exp)
case("exp_wide", {"x": [2, 33]}, torch.exp)
case("log", {"x": [3, 4]}, torch.log, positive=True)
case("sqrt", {"x": [3, 4]}, torch.sqrt, positive=True)
case("relu", {"x": [3, 4]}, torch.relu)
case("sigmoid", {"x": [3, 4]}, torch.sigmoid)
case("tanh", {"x": [3, 4]}, torch.tanh)
case("square", {"x": [3, 4]}, lambda x: x * x)


# rotary, transformers' rotate-half layout
def rope(x, theta, positions):
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    pos = torch.tensor(positions, dtype=torch.float32)
    freqs = pos.reshape(-1, 1).float() @ inv.reshape(1, -1).float()
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos().double(), emb.sin().double()
    if len(positions) == x.shape[2]:
        cos, sin = cos[None, None], sin[None, None]
    else:
        cos = cos.reshape(x.shape[0], 1, x.shape[2], d)
        sin = sin.reshape(x.shape[0], 1, x.shape[2], d)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rot = torch.cat([-x2, x1], -1)
    return x * cos + rot * sin
case("rope", {"x": [2, 3, 4, 8]}, lambda x: rope(x, 10000.0, [0, 1, 2, 3]), {"theta": 10000.0, "positions": [0, 1, 2, 3]})
case("rope_batchpos", {"x": [2, 1, 3, 6]}, lambda x: rope(x, 500.0, [0, 0, 1, 5, 6, 7]), {"theta": 500.0, "positions": [0, 0, 1, 5, 6, 7]})

# cross entropy with ignore index
targets = [1, -100, 4, 0, -100]
case("cross_entropy", {"logits": [5, 6]}, lambda logits: F.cross_entropy(logits, torch.tensor(targets), ignore_index=-100), {"targets": targets})

# optimisers: a few steps on fixed gradients
torch.set_default_dtype(torch.float32)
optim_cases = []
for name, make in [
    ("adam", lambda p: torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
    ("adam_l2", lambda p: torch.optim.Adam([p], lr=0.01, weight_decay=0.1)),
    ("adamw", lambda p: torch.optim.AdamW([p], lr=0.01, weight_decay=0.1)),
    ("sgd_momentum", lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)),
]:
    g = torch.Generator().manual_seed(7)
    p = torch.randn(6, generator=g).requires_grad_(True)
    init = p.detach().clone()
    opt = make(p)
    grads = []
    for _ in range(3):
        gr = torch.randn(6, generator=g)
        grads.append(gr.tolist())
        p.grad = gr.clone()
        opt.step()
    optim_cases.append({"name": name, "init": init.tolist(), "grads": grads, "final": p.detach().tolist()})

from transformers import get_cosine_schedule_with_warmup
p = torch.zeros(1, requires_grad=True)
opt = torch.optim.SGD([p], lr=0.5)
sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=5, num_training_steps=20)
lrs = []
for _ in range(22):
    lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    sched.step()

g = torch.Generator().manual_seed(9)
ps = [torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
for q in ps:
    q.grad = torch.randn(*q.shape, generator=g) * 3
before = [q.grad.clone().reshape(-1).tolist() for q in ps]
norm = torch.nn.utils.clip_grad_norm_(ps, 1.0)
clip = {"grads": before, "maxNorm": 1.0, "norm": float(norm), "clipped": [q.grad.reshape(-1).tolist() for q in ps]}

out = {"cases": cases, "optimizers": optim_cases,
       "schedule": {"peak": 0.5, "warmup": 5, "total": 20, "rates": lrs}, "clip": clip,
       "torch": torch.__version__}
path = os.path.join(os.path.dirname(__file__), "..", "Fixtures", "ops", "ops.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
print("wrote", path, len(cases), "cases")
