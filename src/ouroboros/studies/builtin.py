"""Registers the built-in studies (loop, contamination) with `ouroboros.study`."""

from ouroboros.studies import contamination_study, loop_study  # noqa: F401
