"""The one place the version lives (pyproject.toml reads it). It is part of every cache
key, so a new release recomputes artifacts instead of reusing what older code made."""

__version__ = "0.1.0"
