"""The HTML report of a run, built only from what the run saved (it never trains anything)."""
