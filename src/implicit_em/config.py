"""Configuration: frozen dataclasses with a docstring per field and checks in __post_init__.

YAML files map onto `RunConfig` (sections model, loss, data, training); `override` applies
`section.field=value` strings from the command line. Unknown keys are errors naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from implicit_em.families.registry import DEFAULT_FAMILY, FAMILIES


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names it."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class ModelConfig:
    type: str = DEFAULT_FAMILY
    """Model family (`implicit_em.families`): encoder (decoder-free, ours), standard_sae,
    topk_sae, batchtopk_sae, matryoshka_batchtopk_sae or jumprelu_sae."""
    input_dim: int | None = None
    """D, the input dimension; None (the default) takes it from the data set
    (`implicit_em.data.resolve_input_dim`: 784 for MNIST, 64 for digits)."""
    hidden_dim: int = 64
    """K, the number of components / latents."""
    activation: str = "relu"
    """Activation of the decoder-free encoder: relu, softplus, identity or abs."""
    k: int = 16
    """Active latents per sample, for the families that keep k (TopK; BatchTopK: on average
    over the batch; ignored by the others)."""
    centre: bool = False
    """SAE families and the decoder-free encoder: subtract a fixed input mean, estimated from
    the first training batches and stored with the model (`models._Centring`);
    reconstructions add it back."""
    unit_norm_rows: bool = False
    """Decoder-free encoder: rows of W at unit norm from the start and after every optimizer
    step (`models.Encoder.normalize_rows_`); the stacked trainer refuses it."""
    matryoshka_levels: int = 4
    """Matryoshka BatchTopK SAE: nested prefixes of widths K / 2^(L-1), ..., K / 2, K."""
    jump_threshold: float = 1.0
    """JumpReLU SAE: initial threshold theta of every latent, in the units of the
    pre-activations. 1.0 suits inputs of unit scale per dimension (mean squared norm D, as
    llm-train and the synthetic recipes give), where an untrained model's pre-activations have
    std ~0.6, so ~5% of latents fire at the start; Adam moves theta by about lr per step, so a
    threshold started far below its target (the paper's 0.001, sae-lens's 0.01) stays dense
    for many steps (families/jumprelu_sae.py). Scale it with the inputs otherwise."""
    jump_bandwidth: float = 0.1
    """JumpReLU SAE: bandwidth epsilon of the rectangle kernel of the straight-through
    estimators (Rajamanoharan et al. 2024, Eq. 11-12), in the units of the pre-activations
    (a tenth of jump_threshold, as the harness of docs/eval/synthetic/baselines.md)."""

    def __post_init__(self) -> None:
        _require(
            self.type in FAMILIES,
            f"model.type must be one of {', '.join(FAMILIES)}, got {self.type!r}",
        )
        _require(
            self.input_dim is None or self.input_dim >= 1,
            f"model.input_dim must be None (from the data) or >= 1, got {self.input_dim}",
        )
        _require(self.hidden_dim >= 1, f"model.hidden_dim must be >= 1, got {self.hidden_dim}")
        _require(
            self.activation in ("relu", "softplus", "identity", "abs"),
            f"model.activation must be relu, softplus, identity or abs, got {self.activation!r}",
        )
        _require(self.k >= 1, f"model.k must be >= 1, got {self.k}")
        _require(
            not self.centre or FAMILIES[self.type].centres,
            f"model.centre does not apply to {self.type!r}: drop model.centre",
        )
        _require(
            not self.unit_norm_rows or FAMILIES[self.type].unit_rows,
            f"model.unit_norm_rows does not apply to {self.type!r}: drop model.unit_norm_rows",
        )
        _require(
            self.matryoshka_levels >= 1,
            f"model.matryoshka_levels must be >= 1, got {self.matryoshka_levels}",
        )
        _require(
            self.jump_threshold >= 0,
            f"model.jump_threshold must be >= 0, got {self.jump_threshold}",
        )
        _require(
            self.jump_bandwidth > 0, f"model.jump_bandwidth must be > 0, got {self.jump_bandwidth}"
        )
        _require(
            not FAMILIES[self.type].uses_k or self.k <= self.hidden_dim,
            f"model.k must be in [1, hidden_dim={self.hidden_dim}], got {self.k}",
        )


@dataclass(frozen=True)
class LossConfig:
    lambda_lse: float = 1.0
    """Weight of the LSE term (paper Eq. 3); summed over the batch."""
    lambda_var: float = 1.0
    """Weight of the variance barrier -sum_j log Var(a_j) (paper Eq. 7)."""
    lambda_tc: float = 1.0
    """Weight of the decorrelation penalty ||Corr(a) - I||_F^2 (paper Eq. 7)."""
    lambda_wr: float = 0.0
    """Weight of the weight-redundancy penalty (paper Eq. 8); 0 in the paper."""
    reference_k: int | None = 64
    """K at which lambda_var and lambda_tc apply as given. var is a sum over K units and tc a
    sum over K(K-1) pairs, so at K components the effective weights are
    lambda_var * reference_k / K and lambda_tc * reference_k(reference_k-1) / (K(K-1)),
    keeping their size next to the LSE term from K = 64 to K = 32,768. None disables the
    scaling; at K = reference_k (64, the paper's MNIST setting) nothing changes."""
    variance_eps: float = 1e-6
    """eps inside log(Var + eps). A constant unit (judged at its own round-off) counts as
    Var = 0: it costs exactly -log(eps) with zero gradient (`losses.variance_loss`)."""
    tc_probes: int | None = None
    """None: the decorrelation penalty exactly (O(B^2 K) for B < K). m: an unbiased estimate
    from m Gaussian probes drawn fresh every step (`losses.sketched_correlation_loss`,
    O(B K m)), for K in the thousands, where the exact penalty dominates the step."""
    l1_weight: float = 0.01
    """L1 weight of the standard SAE baseline (paper: 0.01)."""
    aux_coef: float = 1 / 32
    """Weight of the TopK SAE's AuxK dead-latent loss (0 disables it)."""
    aux_k: int = 32
    """Dead latents used by AuxK."""
    dead_steps: int = 1000
    """A TopK latent that has not fired for this many steps counts as dead for AuxK."""
    l0_coef: float = 1.0
    """JumpReLU SAE: weight of the L0 penalty (mean over the batch of the latents firing per
    sample, trained through the Heaviside straight-through estimator), against an MSE averaged
    over D (the paper's lambda / D). At the default threshold it barely moves L0 over short
    runs: 1.0 and 0.1 reach L0 4.9 and 5.0 on the mini recipe (true L0 4.0); the initial
    threshold decides (families/jumprelu_sae.py)."""

    def __post_init__(self) -> None:
        weights = ("lambda_lse", "lambda_var", "lambda_tc", "lambda_wr", "l1_weight", "aux_coef",
                   "l0_coef")  # fmt: skip
        for name in weights:
            _require(
                getattr(self, name) >= 0, f"loss.{name} must be >= 0, got {getattr(self, name)}"
            )
        _require(self.variance_eps > 0, f"loss.variance_eps must be > 0, got {self.variance_eps}")
        _require(self.aux_k >= 1, f"loss.aux_k must be >= 1, got {self.aux_k}")
        _require(
            self.tc_probes is None or self.tc_probes >= 1,
            f"loss.tc_probes must be None (exact) or >= 1, got {self.tc_probes}",
        )
        _require(self.dead_steps >= 1, f"loss.dead_steps must be >= 1, got {self.dead_steps}")
        _require(
            self.reference_k is None or self.reference_k >= 2,
            f"loss.reference_k must be None or >= 2, got {self.reference_k}",
        )


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"
    """mnist, fashion-mnist or digits (sklearn's embedded 8x8 digits)."""
    root: str | None = None
    """Directory holding the IDX files; None searches the usual sources."""
    train_subset: int | None = None
    """Use only the first n training samples (quick runs); None uses all."""
    test_subset: int | None = None
    """Use only the first n test samples; None uses all."""

    def __post_init__(self) -> None:
        _require(
            self.dataset in ("mnist", "fashion-mnist", "digits"),
            f"data.dataset must be mnist, fashion-mnist or digits, got {self.dataset!r}",
        )
        for name in ("train_subset", "test_subset"):
            v = getattr(self, name)
            _require(v is None or v >= 2, f"data.{name} must be None or >= 2, got {v}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    """Passes over the training set."""
    batch_size: int = 128
    """Samples per step; the batch statistics (variance, correlation) use this batch."""
    lr: float = 1e-3
    """Learning rate."""
    optimizer: str = "adam"
    """adam or sgd (plain, no momentum)."""
    seed: int = 42
    """Seeds the initial weights and the data order."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    amp: bool = False
    """Run the model's forward under bf16 autocast; the losses are computed in float32."""

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"training.epochs must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 2, f"training.batch_size must be >= 2, got {self.batch_size}")
        _require(self.lr > 0, f"training.lr must be > 0, got {self.lr}")
        _require(
            self.optimizer in ("adam", "sgd"),
            f"training.optimizer must be adam or sgd, got {self.optimizer!r}",
        )


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig, "training": TrainConfig}


def _coerce(cls, key: str, value: Any, section: str = "") -> Any:
    """Coerce a YAML/CLI value to the field's declared type, or raise naming the key."""
    f = {f.name: f for f in fields(cls)}[key]
    qual = f"{section}.{key}" if section else key
    typ = str(f.type)
    if value is None:
        _require("None" in typ, f"{qual} may not be null")
        return None
    try:
        if isinstance(value, bool) and not typ.startswith("bool"):
            raise TypeError  # YAML `true` is not a number: int(True) would silently give 1
        if typ.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if typ.startswith("float"):
            number = float(value)
            _require(math.isfinite(number), f"{qual} must be a finite number, got {value!r}")
            return number
        if typ.startswith("bool"):
            if isinstance(value, str):
                return {"true": True, "false": False}[value.lower()]
            return bool(value)
        if typ.startswith("str"):
            return str(value)
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"invalid value {value!r} for {qual}: expected {typ}") from None
    return value


def _section_from_dict(name: str, data: dict) -> Any:
    cls = SECTIONS[name]
    if not isinstance(data, dict):
        raise ConfigError(f"section {name!r} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    for key in data:
        _require(key in known, f"unknown key {name}.{key}: valid keys are {sorted(known)}")
    return cls(**{k: _coerce(cls, k, v, name) for k, v in data.items()})


def from_dict(data: dict | None) -> RunConfig:
    """Build a RunConfig from nested dicts; unknown sections or keys raise ConfigError."""
    data = data or {}
    for key in data:
        _require(key in SECTIONS, f"unknown section {key!r}: valid sections are {sorted(SECTIONS)}")
    return RunConfig(**{k: _section_from_dict(k, v or {}) for k, v in data.items()})


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict:
    """`section.field=value` strings -> nested dict (values parsed as YAML scalars)."""
    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        _require(
            bool(sep and dot and name),
            f"override {item!r} must look like section.field=value, e.g. training.lr=0.01",
        )
        out.setdefault(section, {})[name] = yaml.safe_load(raw)
    return out


def override(cfg: RunConfig, assignments: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply `section.field=value` strings (values parsed as YAML scalars)."""
    updates = parse_overrides(assignments)
    for section in updates:
        _require(
            section in SECTIONS,
            f"unknown section {section!r} in an override: valid sections are {sorted(SECTIONS)}",
        )
    merged = cfg.to_dict()
    for section, vals in updates.items():
        merged[section].update(vals)
        for name in vals:
            known = {f.name for f in fields(SECTIONS[section])}
            _require(name in known, f"unknown key {section}.{name}: valid keys are {sorted(known)}")
    return from_dict(merged)


def config_path(name: str | Path) -> Path:
    """A YAML file: `name` itself when it ends in .yaml/.yml, else the configuration shipped
    with the package (`default`, `quick`, `ablation`, `benchmark`, `dynamics`)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    from importlib.resources import files

    shipped = files("implicit_em") / "configs" / f"{name}.yaml"
    if not shipped.is_file():
        names = sorted(f.name[:-5] for f in (files("implicit_em") / "configs").iterdir()
                       if f.name.endswith(".yaml"))  # fmt: skip
        raise ConfigError(
            f"no shipped config named {name!r}: choose one of {', '.join(names)} or pass a "
            "path ending in .yaml"
        )
    return Path(str(shipped))


def load_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file (a path, or the name of a shipped config)."""
    path = config_path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found: pass an existing YAML file")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{path} is not valid YAML{where} ({problem}): fix the file's syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level: write `section: {{field: value}}` "
                          "lines (sections model, loss, data, training)")
    return data


def load_config(
    path: str | Path = "default", overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Load a run YAML (sections model/loss/data/training; a path or a shipped config's name)
    and apply `section.field=value` overrides."""
    return override(from_dict(load_yaml(path)), list(overrides))
