"""The agent: a process kept running between commands, so that a short `jupyter-split` command does
not pay for importing the SSH library, fsspec and the config's models every time.

`jupyter-split agent start` starts it; while it runs, each `jupyter-split VERB ...` hands its
arguments, directory, environment, umask and terminal to it (`forward.py`), and it runs the command
in a process forked from itself, whose imports are done (`serve.py`): the same code as a command in
its own process, with the same output, errors and exit status. It stops after an idle time, when
asked, or when its code changes on disk. `JUPYTER_SPLIT_AGENT=off` runs a command in its own
process whatever runs.
"""
