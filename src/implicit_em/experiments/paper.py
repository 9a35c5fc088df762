"""The paper's published numbers (Oursland, 'Deriving Decoder-Free Sparse Autoencoders from
First Principles'), for side-by-side comparison. (mean, std); std None when not reported."""

import math

THEOREM = {"max_abs_error": 4.47e-8, "mean_abs_error": 2.79e-9, "correlation": 1.0}

# Table 5: dead units (of 64), redundancy, responsibility entropy.
ABLATION = {
    "lse_only": {"dead_units": 64, "redundancy": None, "resp_entropy": 4.16},
    "lse_var": {"dead_units": 0, "redundancy": 1875, "resp_entropy": 3.77},
    "lse_var_tc": {"dead_units": 0, "redundancy": 29, "resp_entropy": 3.85},
    "var_tc_only": {"dead_units": 0, "redundancy": 28, "resp_entropy": 1.99},
}

# Table 7: probe accuracy, L0 (active of 64), parameters, reconstruction MSE.
BENCHMARK = {
    "ours": {"probe": (0.9343, 0.0038), "l0": 17.2, "params": 50240, "recon_mse": (0.143, 0.001)},
    "standard_sae": {
        "probe": (0.9026, 0.0032),
        "l0": 32.2,
        "params": 101200,
        "recon_mse": (0.026, 0.001),
    },
    "raw_pixels": {"probe": (0.92, None)},
}

# Table 8: final loss and probe accuracy per (optimizer, lr).
DYNAMICS = {
    ("sgd", 0.0001): {"loss": (-520, 1), "probe": (0.922, 0.003)},
    ("sgd", 0.001): {"loss": (-676, 0), "probe": (0.926, 0.002)},
    ("sgd", 0.01): {"loss": (-795, 29), "probe": (0.936, 0.001)},
    ("sgd", 0.1): {"loss": (-967, 18), "probe": (0.935, 0.001)},
    ("adam", 0.0001): {"loss": (-745, 2), "probe": (0.929, 0.000)},
    ("adam", 0.001): {"loss": (-999, 1), "probe": (0.935, 0.004)},
    ("adam", 0.01): {"loss": (-1215, 21), "probe": (0.935, 0.002)},
    ("adam", 0.1): {"loss": (-1420, 13), "probe": (0.931, 0.002)},
}


def differs(ours_mean: float, ours_std: float, paper_mean: float, paper_std: float | None) -> bool:
    """More than two standard deviations apart (the larger of the two stds; 2 % of |paper|
    as a floor when neither run set has spread)."""
    def finite(x: float | None) -> float:
        return x if x is not None and math.isfinite(x) else 0.0  # one seed: no spread known

    spread = max(finite(ours_std), finite(paper_std), 0.01 * abs(paper_mean))
    return abs(ours_mean - paper_mean) > 2 * spread
