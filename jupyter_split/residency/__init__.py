"""Data residency, in small parts: locations (globs), labels (objects), audit (the log),
taint (inside a runner), guard (the decisions). Use it through `jupyter_split.policy`."""
