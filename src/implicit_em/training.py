"""Moved to `implicit_em.train.loop` (issue 14); this path is an alias kept for old imports."""

from implicit_em._moved import alias

alias(__name__, "implicit_em.train.loop")
