"""The site side: the runner that executes cells (`runner`), its socket (`server`), output capture
(`capture`), the entry of a cluster job (`cluster`), the torchrun launcher (`launcher`) and
preemption hooks (`preempt`). Started as `python -m jupyter_split.runner`."""
