"""Export LM runs to the SAELens format, load them with sae-lens, and compare codes.

    python scripts/saelens_check.py --acts ACTS --runs RUN [RUN ...] --out DIR [--json F]

For each run: `run_export` (SAELens format) into DIR/<run name>, `sae_lens.SAE.load_from_disk`,
then on the held-out split (model units): max |sae.encode(x) - code_scale * ours(x_n)|, the
same after `fold_W_dec_norm()`, max |sae.decode - ours decode| in model units (SAEs and
the least-squares decoder), and whether the active sets agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from implicit_em.data.lm.activations import read_split
from implicit_em.interop.commands import ExportOptions, run_export, run_metadata
from implicit_em.interop.saelens import load_native
from implicit_em.lm_eval import encode, fit_linear_decoder


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--acts", required=True)
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fit-tokens", type=int, default=20_000)
    p.add_argument("--json")
    args = p.parse_args()
    import sae_lens

    raw, _ = read_split(args.acts, "heldout")  # (N, D) model units
    results = {}
    for run in args.runs:
        dest = Path(args.out) / Path(run).name
        summary = run_export(ExportOptions(run=run, out=str(dest), fit_tokens=args.fit_tokens))
        sae = sae_lens.SAE.load_from_disk(dest)
        model, norm, c = load_native(dest)
        with torch.no_grad():
            ours = model.encode(norm.apply(raw)) * c  # (N, K)
            theirs = sae.encode(raw)
            if hasattr(model, "decode"):
                ours_dec = norm.invert(model.decode(model.encode(norm.apply(raw))))
            else:
                _, _, llm = run_metadata(Path(run))
                x_fit, _ = read_split(llm["harvest_dir"], "train", args.fit_tokens, norm=norm)
                V, v = fit_linear_decoder(encode(model, x_fit), x_fit)
                ours_dec = norm.invert(model.encode(norm.apply(raw)) @ V + v)
            dec_diff = float((sae.decode(theirs) - ours_dec).abs().max())
            sae.fold_W_dec_norm()
            folded = sae.encode(raw)
        res = {
            **summary,
            "sae_lens_version": sae_lens.__version__,
            "loaded_architecture": sae.cfg.architecture(),
            "hook_name": sae.cfg.metadata.hook_name,
            "n_heldout_tokens": int(raw.shape[0]),
            "max_abs_code": float(ours.abs().max()),
            "max_abs_code_diff": float((theirs - ours).abs().max()),
            "max_abs_code_diff_after_fold": float((folded - ours).abs().max()),
            "same_active_set": bool(torch.equal(theirs > 0, ours > 0)),
            "mean_l0": float((theirs > 0).float().sum(1).mean()),
            "max_abs_decode_diff_model_units": dec_diff,
            "max_abs_x_model_units": float(raw.abs().max()),
        }
        results[run] = res
        print(json.dumps(res))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
