"""Real services as pytest fixtures: S3 (moto_server), Slurm (with or without slurmdbd),
Ray, and sshd.

Each fixture starts the real program on 127.0.0.1 with its own ports and state directory,
and fails (never skips) with the install command when the program is missing.
`python -m tests.services NAME` starts one by hand and prints how to reach it.
"""
from .ray import ray_cluster  # noqa: F401
from .s3 import s3, s3_second  # noqa: F401
from .slurm import slurm  # noqa: F401
from .slurmdbd import slurm_accounting  # noqa: F401
from .sshd import sshd  # noqa: F401

__all__ = ["ray_cluster", "s3", "s3_second", "slurm", "slurm_accounting", "sshd"]
