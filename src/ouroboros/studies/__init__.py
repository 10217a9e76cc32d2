"""The studies and what they share. Importing `ouroboros.studies.builtin` registers the
built-in studies (`ouroboros.study`); this package itself imports none of them, so the
stage functions and the config can use its pure parts (scenarios, curation)."""
