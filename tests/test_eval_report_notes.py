"""The synthetic report's reading aids: the CPU-recipe note (its verdict is a harness check,
not the study's answer) and the key to the "MCC enc. rows" column."""

from implicit_em.eval.synthetic import _scale_note


def test_cpu_recipes_carry_the_note_and_the_study_recipe_does_not():
    for recipe in ("tiny", "mini", "small"):
        assert _scale_note(recipe).startswith(f"Recipe `{recipe}` is a CPU-sized check")
    assert _scale_note("synthsaebench-16k-v2") == ""


def test_the_terminal_gets_the_verdict_headline_not_the_whole_paragraph():
    from implicit_em.eval.summary import headline

    para = ("The issue's target is **not met** by any eligible model. **Where** ... long. "
            "**Best variant:** `m` (hybrid), meeting 3 of 8 (a, b); it misses x: 0.1. More.")  # fmt: skip
    assert headline(para) == ("The issue's target is **not met** by any eligible model. "
                              "**Best variant:** `m` (hybrid), meeting 3 of 8 (a, b).")  # fmt: skip
    assert headline("Only one sentence. Then more") == "Only one sentence."


def test_a_seed_given_twice_and_an_out_that_is_a_file_are_refused(tmp_path):
    import pytest

    from implicit_em.atomic import free_paths
    from implicit_em.eval.options import SyntheticEvalOptions

    with pytest.raises(ValueError, match="seed 0 more than once"):
        SyntheticEvalOptions(recipe="tiny", seeds=(0, 1, 0))
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is a file, not a directory: choose another --out"):
        free_paths(tmp_path / "f", ("a.md",), overwrite=True)


def test_the_out_folder_check_names_a_file_part_of_its_path(tmp_path):
    import pytest

    from implicit_em.atomic import file_in_the_way, free_paths

    (tmp_path / "f").write_text("x")
    assert file_in_the_way(tmp_path / "new" / "deeper") is None
    assert file_in_the_way(tmp_path / "f") == tmp_path / "f"
    assert file_in_the_way(tmp_path / "f" / "sub") == tmp_path / "f"
    with pytest.raises(FileExistsError, match="its part .*f is a file"):
        free_paths(tmp_path / "f" / "sub", ("a.md",), overwrite=False)
    assert _scale_note("small-flat-l0-1").startswith("Recipe `small-flat-l0-1` is a CPU-sized")
