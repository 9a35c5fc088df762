"""Evaluations that do not presuppose a decoder (issue 18)."""
