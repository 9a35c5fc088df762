"""Which term drives the decoder-free encoder's step, with the exact decorrelation term.

The harness's gshare_* use the sketched tc (32 probes), whose probe noise is part of both the
tc gradient and the total and so inflates tc's share. Here the same training (mini, 600 x 512,
Adam 1e-3, sketched tc for the step) is measured every 50 steps on the same batch with the
exact terms (`losses.infomax_reference`, probes None): ||dL_t/dW|| of each weighted term and its
share <g_t, g> / ||g||^2 of the exact total g. Also the per-sample LSE against -log K and the
share of units active per sample. Run from the repository root:

    python docs/eval/synthetic/cpu-why/grad_shares.py docs/eval/synthetic/cpu-why/grad/shares.json
"""

import json
import math
import sys
from dataclasses import replace

import torch

from implicit_em.config import LossConfig
from implicit_em.eval import synthetic as S
from implicit_em.losses import infomax_reference
from implicit_em.models import Encoder
from implicit_em.train.loop import loss_terms, optimizer_step, term_weights

torch.set_num_threads(1)
synth = S.build_synthetic_model("mini")
out = {}
for name, gauss in (("encoder", False), ("encoder-gauss", True)):
    torch.manual_seed(0)
    d, k = synth.cfg.hidden_dim, synth.cfg.num_features
    model = Encoder(d, k)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = replace(LossConfig(), tc_probes=32)
    w = term_weights("encoder", loss, k)
    sample = S.gaussian_sampler(synth) if gauss else synth.sample
    recs = []
    for step in range(1, 601):
        x = sample(512)
        terms = loss_terms(model, x, loss)
        a = terms.pop("a")
        if step % 50 == 0 or step == 1:
            lse, var, tc = infomax_reference(a, None)
            parts = {"lse": w["lse"] * lse, "var": w["var"] * var, "tc": w["tc"] * tc}
            g = S.gradient_shares(model.W, parts)
            g.update(step=step, lse_per_sample=float(lse) / 512, minus_log_k=-math.log(k),
                     l0=float((a > 0).float().sum(1).mean()),
                     weighted={t: float(v) for t, v in parts.items()})  # fmt: skip
            recs.append(g)
            print(name, {t: round(v, 3) if isinstance(v, float) else v for t, v in g.items()})
        total = sum(w[t] * terms[t] for t in w)
        optimizer_step(model, opt, total)
    out[name] = recs
json.dump(out, open(sys.argv[1], "w"), indent=1)
