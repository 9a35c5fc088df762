"""The paper's experiments and the studies beyond it; each is a module and a CLI subcommand."""
