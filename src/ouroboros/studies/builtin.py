"""Registers the built-in studies (loop, contamination, captioning) with `ouroboros.study`."""

from ouroboros.studies import captioning_study, contamination_study, loop_study  # noqa: F401
