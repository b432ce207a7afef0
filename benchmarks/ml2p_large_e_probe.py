"""Instrumented short ml2p runs at E = 50 / 300 / 384 (issue 12; docs/models.md, ml2p, "Large E").

    python benchmarks/ml2p_large_e_probe.py SPEC VARIANT STEPS LR [SEED] [GROUPS] [STORE]

SPEC: an embedder spec (glove50, glove50x300, minilm). VARIANT: ``none`` (released group
attention), ``scale`` (q kᵀ / √E) or ``scale50`` (q kᵀ · √(50 / E)), patched onto
GroupAttention.forward so the affinity and the sigmoid's saturation can be logged. 1,536 training
images, batch 64, AdamW (wd 0.05), 5 % warmup then cosine, weighted BCE on the seen labels; mAP
on 400 test images (unannotated entries counted as negatives). Prints one JSON line at the end.
"""

import json
import math
import sys
import time

import h5py
import numpy as np
import torch

from mlzsl.embeddings.registry import create_embedder
from mlzsl.models import _layers
from mlzsl.models.ml2p import ML2PEncoder
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.losses import weighted_bce_loss

torch.set_num_threads(1)
spec, variant, steps, lr = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
G = int(sys.argv[6]) if len(sys.argv) > 6 else 7
f = h5py.File(sys.argv[7] if len(sys.argv) > 7 else "features.h5", "r")
split = f["split"][:]
tr = np.where(split == b"train")[0][:1536]
te = np.where(split == b"test")[0][:400]
X = torch.tensor(f["features"][:].astype(np.float32))
Y = torch.tensor(FeatureStore(f.filename).labels().astype(np.float32))  # CSR or dense store
seen = torch.tensor(f["vocabulary/seen"][:])
names = [n.decode() if isinstance(n, bytes) else n for n in f["vocabulary/names"][:]]
V = torch.tensor(create_embedder(spec).embed(names))
E = V.shape[1]
orig = _layers.GroupAttention.forward
stats = {}


def fwd(self, x):
    q, k = self.query(x), self.key(x)
    aff = q @ k.transpose(-2, -1)
    if variant == "scale":
        aff = aff / math.sqrt(x.shape[-1])
    if variant == "scale50":
        aff = aff * math.sqrt(50 / x.shape[-1])
    stats["aff"] = aff.detach().abs().mean().item()
    out = aff @ x
    stats["out"] = out.detach().std().item()
    stats["xin"] = x.detach().std(0).mean().item()
    stats["sat"] = ((x.detach() < 0.02) | (x.detach() > 0.98)).float().mean().item()
    return out


_layers.GroupAttention.forward = fwd
torch.manual_seed(seed)
m = ML2PEncoder(
    in_channels=1280,
    embed_dim=E,
    num_positions=25,
    groups=G,
    position_pooling="scores",
    attention_residual=True,
    interleave_groups=False,
)
opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.05)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt,
    lambda s: min(1, (s + 1) / max(1, steps * 0.05)) * 0.5 * (1 + math.cos(math.pi * s / steps)),
)
g = torch.Generator().manual_seed(seed)


def ap(s, y):
    aps = []
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            continue
        o = torch.argsort(s[:, j], descending=True)
        yy = y[o, j]
        prec = yy.cumsum(0) / torch.arange(1, len(yy) + 1)
        aps.append((prec * yy).sum().item() / yy.sum().item())
    return 100 * float(np.mean(aps))


t0 = time.time()
s = 0
while s < steps:
    perm = tr[torch.randperm(len(tr), generator=g).numpy()]
    for i in range(0, len(perm) - 63, 64):
        b = perm[i : i + 64]
        sc = m(X[b], V[seen]) if callable(m) else None
        loss = weighted_bce_loss(sc, Y[b][:, seen])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        s += 1
        if s % max(1, steps // 12) == 0 or s <= 3:
            print(
                f"step {s} loss {loss.item():.3f} aff {stats['aff']:.3g} out {stats['out']:.3g} "
                f"xin {stats['xin']:.3g} sat {stats['sat']:.2f} t {time.time() - t0:.0f}s",
                flush=True,
            )
        if s >= steps:
            break
m.eval()
with torch.no_grad():
    st = torch.cat([m(X[te[i : i + 100]], V) for i in range(0, len(te), 100)])
yt = (Y[te] > 0).float()
res = dict(
    G=G,
    spec=spec,
    variant=variant,
    steps=steps,
    lr=lr,
    seed=seed,
    seen_mAP=ap(st[:, seen], yt[:, seen]),
    zsl_mAP=ap(st[:, ~seen], yt[:, ~seen]),
    img_over_label_std=(st.std(0).mean() / st.std(1).mean()).item(),
    aff=stats["aff"],
    t=time.time() - t0,
)
print(json.dumps(res))
