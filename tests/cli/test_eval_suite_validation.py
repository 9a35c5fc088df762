"""`implicit-em eval-suite synthetic | probing`: bad input gets one stderr line naming the flag
as typed and the fix, exit 2, no traceback, and fails before any model is built or trained
and before the language model, the corpora or an activation harvest is touched (each case
runs with those steps patched to fail the test if they are reached)."""

from __future__ import annotations

import pytest
import torch

from implicit_em.cli import COMMANDS, error_line, main, parser_for
from implicit_em.cli.options import as_flags, build_options, flag_names
from implicit_em.eval import probing_suite, synthetic
from implicit_em.eval.options import (
    PROBING_TASKS,
    VARIANTS,
    ProbingOptions,
    SyntheticEvalOptions,
)


def one_line(capsys) -> str:
    """The single stderr line of a refused invocation (checked to be the only one)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    # ours start "implicit-em: error:", argparse's name the command first
    assert line.startswith("implicit-em") and "error: " in line, line
    assert ": " in line.split("error: ", 1)[1], line  # the problem, then the fix
    assert "YAML" not in line and "--set" not in line, line  # eval-suite has neither
    return line


def never(name: str):
    def called(*args, **kwargs):
        raise AssertionError(f"{name} ran before the input was checked")

    return called


@pytest.fixture
def no_synthetic_work(monkeypatch):
    """Building the synthetic model (the first expensive step) and training fail the test."""
    monkeypatch.setattr(synthetic, "build_synthetic_model", never("build_synthetic_model"))
    monkeypatch.setattr(synthetic, "train_variant", never("train_variant"))
    monkeypatch.setattr(synthetic, "VariantTrainer", never("VariantTrainer"))


@pytest.fixture
def no_probing_work(monkeypatch):
    """Loading the LM or the corpora, harvesting and training fail the test; the hub is
    never asked (offline)."""
    monkeypatch.setattr(probing_suite, "_load_inputs", never("loading the LM and corpora"))
    monkeypatch.setattr(probing_suite, "cached_passage_activations", never("the harvest"))
    monkeypatch.setattr("implicit_em.train.loop.train", never("training"))
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


SYNTH = ["eval-suite", "synthetic", "--recipe", "tiny"]

SYNTHETIC_CASES = [  # (flags, what the line must say); T is a scratch directory
    (["--eval-samples", "0"], "--eval-samples must be >= 1, got 0: "),
    (["--eval-samples", "-5"], "--eval-samples must be >= 1, got -5: "),
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0: pass e.g. 1e-3"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--steps", "-5"], "--steps must be >= 0, got -5: "),
    (["--batch-size", "0"], "--batch-size must be >= 2, got 0: "),
    (["--log-every", "0"], "--log-every must be >= 1, got 0"),
    (["--latents", "0"], "--latents must be >= 1, got 0"),
    (["--k", "999"], "--k 999 exceeds the 256 latents: choose a k of at most the number of latents (--latents)"),
    (["--readout-k", "300"], "--readout-k 300 exceeds the 256 latents"),
    (["--variants", "topk-k214", "--latents", "64"], "keeps k = 214 of only 64 latents: raise --latents"),
    (["--ortho", "-1", "3e-4"], "--ortho needs steps >= 0 and a learning rate > 0"),
    (["--max-seconds", "0", "--shared-stream"], "--max-seconds must be > 0, got 0.0"),
    (["--one-stream"], "--one-stream applies to a shared-stream run only: add --shared-stream or drop --one-stream"),
    (["--fast-step"], "pass --no-gradient-shares, leave --history-mcc off, or drop --fast-step"),
    (["--variants", "encoder-centred", "--fast-step", "--no-gradient-shares"],
     "--fast-step does not cover 'encoder-centred'"),
    (["--variants", "encoder-gauss", "--shared-stream"], "drop --shared-stream or the variant"),
    (["--recipe", "smal"], "unknown --recipe 'smal': choose one of "),
    (["--device", "gpu"], "--device: unknown device 'gpu': use cpu, cuda"),
    (["--out-dir", "T/file"], "--out-dir T/file is a file, not a directory: choose another output directory"),
    (["--out-dir", "T/file/below"], "(its part T/file is a file)"),
    (["--out-dir", "T/done"], "--out-dir T/done already holds results.json: choose another --out-dir"),
    (["--ortho", "5", "x"], "argument --ortho: invalid float value: 'x'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "flags,says", SYNTHETIC_CASES, ids=[" ".join(c[0]) for c in SYNTHETIC_CASES]
)
def test_synthetic_refuses_bad_input_before_any_work(
    flags, says, tmp_path, capsys, no_synthetic_work
):
    (tmp_path / "file").write_text("kept")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "results.json").write_text("{}")
    argv = [a.replace("T/", f"{tmp_path}/") for a in flags]
    assert main([*SYNTH, *argv]) == 2
    line = one_line(capsys).replace(str(tmp_path), "T")
    assert says in line, line
    assert (tmp_path / "file").read_text() == "kept"  # nothing written is touched
    assert (tmp_path / "done" / "results.json").read_text() == "{}"
    assert not (tmp_path / "file" / "below").exists()


def test_synthetic_unknown_variant_names_the_closest_and_where_the_list_is(
    capsys, no_synthetic_work
):
    assert main([*SYNTH, "--variants", "encodr", "topk"]) == 2
    line = one_line(capsys)
    assert line.startswith("implicit-em: error: unknown variants named in --variants: 'encodr' "
                           "(closest: 'encoder'")  # fmt: skip
    assert "`implicit-em eval-suite synthetic --help` lists at its end" in line
    assert len(line) < 300 and "matryoshka" not in line  # not all 100+ names
    assert main([*SYNTH, "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--variants takes these {len(VARIANTS)} names" in help_text
    assert all(name in help_text for name in VARIANTS)


def test_synthetic_without_out_dir_says_so_before_training(tmp_path, monkeypatch, capsys):
    """No --out-dir: one note on stderr, before `run` (training) starts, naming the flag."""
    seen = []

    def fake_run(opts):
        seen.append(capsys.readouterr().err)  # what was said before training began
        return {"rows": []}

    monkeypatch.setattr(synthetic, "run", fake_run)
    assert main([*SYNTH, "--variants", "encoder"]) == 0
    (before,) = seen
    assert before.count("\n") == 1
    assert before.startswith("implicit-em: note: no --out-dir: ") and "nothing is written" in before
    assert "pass --out-dir DIR to keep results.json, report.md, mcc_vs_l0.png" in before
    assert main([*SYNTH, "--variants", "encoder", "--out-dir", str(tmp_path / "o")]) == 0
    assert seen[1] == ""  # with --out-dir: no note


PROBE = ["eval-suite", "probing"]

PROBING_CASES = [  # (flags, what the line must say); T is a scratch directory, MODEL a folder
    (["--epochs", "0"], "--epochs must be >= 1, got 0: "),
    (["--tasks", "nosuchtask"], "unknown task 'nosuchtask' in --tasks: choose from spam_vs_ham, "),
    (["--quota", "0", "0", "0", "0", "0"], "--quota 0 for corpus 'sotu': every corpus needs a quota >= 1"),
    (["--quota", "10", "10"], "--quota has 2 entries for 5 --corpora: give one passage count per corpus"),
    (["--hidden-dim", "-4"], "--hidden-dim must be >= 1, got -4: "),
    (["--hidden-dim", "8"], "--hidden-dim 8 is below the largest of --ks, 20: raise --hidden-dim"),
    (["--test-fraction", "1.5"], "--test-fraction must be between 0 and 1 (exclusive), got 1.5"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["--batch-size", "0"], "--batch-size must be >= 2, got 0"),
    (["--l1-weight", "-1"], "--l1-weight must be a finite number >= 0, got -1.0"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--layer", "-1"], "--layer must be >= 0, got -1"),
    (["--ks", "0"], "--ks must be integers >= 1, got 0"),
    (["--topk-k", "0"], "--topk-k 0 must be between 1 and --hidden-dim (512)"),
    (["--max-per-class", "1"], "--max-per-class must be >= 2, got 1"),
    (["--lm-batch-size", "0"], "--lm-batch-size must be >= 1, got 0"),
    (["--ce-contexts", "-1"], "--ce-contexts must be >= 0, got -1"),
    (["--max-norm-ratio", "-1"], "--max-norm-ratio must be >= 0, got -1.0"),
    (["--hook-point", "resid_mid"], "--hook-point must be resid_pre or resid_post"),
    (["--activations", "gelu"], "--activations: 'gelu' is not relu or softplus"),
    (["--corpora", "sotu", "moby", "--quota", "10", "10"],
     "task 'spam_vs_ham' needs the corpus spam in --corpora: add it (with its --quota) or drop the task from --tasks"),
    (["--corpora", "sotu", "--quota", "10", "--tasks", "source"], "task 'source' tells corpora apart"),
    (["--corpora", "sotu", "sotu", "--quota", "1", "1", "--tasks", "sotu_era"], "--corpora names sotu twice"),
    (["--corpora", "sotu", "mob", "--quota", "10", "10", "--tasks", "sotu_era"],
     "unknown corpus 'mob' in --corpora: choose from sotu, moby, spam, pydoc, perldoc"),
    # a mistyped name is named before the quota's count or a task's corpus (newcomer trial)
    (["--corpora", "nosuch"], "unknown corpus 'nosuch' in --corpora: choose from sotu, moby"),
    (["--model", "nosuchmodel"], "--model 'nosuchmodel' is not a file, a folder nor a hub model in the local cache"),
    (["--model", "T/file"], "--model T/file is a file but not a .gguf: pass smollm2-135m"),
    (["--model", "T/x.gguf"], "--model: GGUF file T/x.gguf not found"),
    (["--out-dir", "T/file"], "--out-dir T/file is a file, not a directory"),
    (["--out-dir", "T/done"], "--out-dir T/done already holds probing.md: pass --overwrite to replace them, or choose another --out-dir"),
]  # fmt: skip


@pytest.mark.parametrize("flags,says", PROBING_CASES, ids=[" ".join(c[0]) for c in PROBING_CASES])
def test_probing_refuses_bad_input_before_any_work(flags, says, tmp_path, capsys, no_probing_work):
    (tmp_path / "file").write_text("kept")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "probing.md").write_text("kept")
    (tmp_path / "model").mkdir()  # a model folder: passes the model check
    argv = [a.replace("T/", f"{tmp_path}/") for a in flags]
    if "--model" not in argv:
        argv += ["--model", str(tmp_path / "model")]
    if "--out-dir" not in argv:
        argv += ["--out-dir", str(tmp_path / "out")]
    assert main([*PROBE, *argv]) == 2
    line = one_line(capsys).replace(str(tmp_path), "T")
    assert says in line, line
    assert (tmp_path / "file").read_text() == "kept"
    assert (tmp_path / "done" / "probing.md").read_text() == "kept"


def test_probing_layer_out_of_range_is_refused_before_the_harvest(tmp_path, monkeypatch, capsys):
    """The layer's upper bound needs the model: checked right after loading it, before the
    passage pool, the harvest or any training."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=258, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    lm = transformers.LlamaForCausalLM(cfg).eval()
    monkeypatch.setattr(probing_suite, "_load_inputs", lambda opts, *a: (lm, None, {}, {}))
    monkeypatch.setattr(probing_suite, "cached_passage_activations", never("the harvest"))
    monkeypatch.setattr("implicit_em.eval.probing_tasks.build_pool", never("the passage pool"))
    (tmp_path / "model").mkdir()
    argv = [*PROBE, "--model", str(tmp_path / "model"), "--out-dir", str(tmp_path / "o"),
            "--layer", "5"]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 2
    finally:
        torch.set_num_threads(threads)  # the command sets --threads (1) for the process
    line = one_line(capsys)
    assert "--layer: layer 5 out of range: the model has 3 blocks, use 0..2" in line


def test_probing_model_check_without_the_hub(tmp_path, monkeypatch):
    """A hub id not in the local cache: refused at once when the hub cannot be reached (the
    loader retried for ~25 s); a hub id in the cache, a folder and a .gguf file pass."""
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(hub, "model_info", unreachable)
    with pytest.raises(FileNotFoundError, match="the Hugging Face hub cannot be reached") as e:
        probing_suite.check_model("nosuchmodel")
    assert "`model` 'nosuchmodel'" in e.value.named and "`model`" not in str(e.value)
    monkeypatch.setattr(hub, "try_to_load_from_cache", lambda *a, **k: "/cache/config.json")
    probing_suite.check_model("org/cached")  # in the cache: no question to the hub
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    probing_suite.check_model(str(tmp_path / "m.gguf"))
    probing_suite.check_model(str(tmp_path))


def test_probing_tasks_are_the_ones_build_tasks_knows():
    from implicit_em.eval.probing_tasks import label_fn

    for task in PROBING_TASKS:
        if task != "source":
            label_fn(task)  # known
    with pytest.raises(ValueError):
        label_fn("nosuchtask")


def test_eval_suite_unknown_subcommand_lists_the_groups_commands(capsys):
    assert main(["eval-suite", "nosuch"]) == 2
    line = one_line(capsys)
    assert line == ("implicit-em: error: unknown command 'eval-suite nosuch': choose one of "
                    "eval-suite synthetic, probing, probing-study, verdict (`implicit-em "
                    "eval-suite --help` says what each does)")  # fmt: skip
    assert main(["eval-suite", "probin"]) == 2
    line = one_line(capsys)
    assert "did you mean 'eval-suite probing'? (eval-suite's commands: synthetic, probing, " in line
    assert main(["eval-suite", "probing-study", "nosuch"]) == 2
    line = one_line(capsys)
    assert "choose one of eval-suite probing-study prepare, run, report, compare" in line
    assert main(["trian"]) == 2  # top level: as before
    assert one_line(capsys) == "implicit-em: error: unknown command 'trian': did you mean 'train'?"


# ---------------------------------------------------------------- the field -> flag mapping


def test_library_callers_read_the_field_names_and_the_cli_the_flags():
    with pytest.raises(ValueError) as e:
        ProbingOptions(hidden_dim=-4)
    assert str(e.value) == "hidden_dim must be >= 1, got -4: pass the number of latents K, e.g. 512"
    command = next(c for c in COMMANDS if c.name == "eval-suite probing")
    msg, status = error_line(e.value, command)
    assert (msg, status) == ("--hidden-dim must be >= 1, got -4: pass the number of latents K, "
                             "e.g. 512", 2)  # fmt: skip
    with pytest.raises(ValueError) as e:
        SyntheticEvalOptions(recipe="tiny", eval_samples=0)
    assert str(e.value) == "eval_samples must be >= 1, got 0: pass a value of 1 or more"
    command = next(c for c in COMMANDS if c.name == "eval-suite synthetic")
    msg, status = error_line(e.value, command)
    assert (msg, status) == ("--eval-samples must be >= 1, got 0: pass a value of 1 or more", 2)
    with pytest.raises(ValueError) as e:
        SyntheticEvalOptions(recipe="tiny", fast_step=True)
    assert "pass gradient_shares=False, leave history_mcc off, or drop fast_step" in str(e.value)


def test_as_flags_writes_each_backticked_field_as_typed():
    flags = flag_names(SyntheticEvalOptions)
    assert flags["eval_samples"] == "--eval-samples" and flags["out_dir"] == "--out-dir"
    shown = as_flags("`lr=-1` `gradient_shares=False` `history_mcc=False` `history_mcc=True` "
                     "`steps` `nosuch` `eval.options` plain steps", SyntheticEvalOptions)  # fmt: skip
    assert shown == ("--lr -1 --no-gradient-shares no --history-mcc --history-mcc --steps "
                     "`nosuch` `eval.options` plain steps")  # fmt: skip
    assert as_flags("`overwrite=True` `out_dir`", ProbingOptions) == "--overwrite --out-dir"


def test_a_bare_rule_gets_the_fix_that_fits_the_command():
    """A library rule with no fix of its own: eval-suite has no YAML config or --set."""
    from implicit_em.config import load_config

    try:
        load_config("default", ["training.epochs=0"])
    except ValueError as err:
        e = err
    probing = next(c for c in COMMANDS if c.name == "eval-suite probing")
    train = next(c for c in COMMANDS if c.name == "train")
    assert error_line(e, probing)[0].endswith(
        ": change that flag (`implicit-em eval-suite probing --help` lists them)")  # fmt: skip
    assert error_line(e, train)[0].endswith("(in the YAML config, or with --set / its flag)")
    assert error_line(e)[0].endswith("(in the YAML config, or with --set / its flag)")


def test_a_fixed_length_tuple_flag_takes_each_value_in_its_type():
    """`--ortho STEPS LR` (tuple[int, float]): parsed as (int, float), not int twice."""
    command = next(c for c in COMMANDS if c.name == "eval-suite synthetic")
    ns = parser_for(command).parse_args(["--recipe", "tiny", "--ortho", "50", "3e-4"])
    opts = build_options(SyntheticEvalOptions, ns)
    assert opts.ortho == (50, 3e-4) and isinstance(opts.ortho[0], int)
    assert "--ortho STEPS LR" in parser_for(command).format_help()


def test_every_eval_suite_message_names_flags_not_fields(tmp_path, capsys, no_synthetic_work):
    """No field name with an underscore leaks into an eval-suite error line."""
    for flags in [c[0] for c in SYNTHETIC_CASES if not any("T/" in a for a in c[0])]:
        main([*SYNTH, *flags])
        line = capsys.readouterr().err
        fields = [f for f in flag_names(SyntheticEvalOptions) if "_" in f and f in line]
        assert not fields, (flags, line)
