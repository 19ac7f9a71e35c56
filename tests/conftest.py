"""Fixtures: the core ones, and the real services (sshd, S3, Slurm, Ray) the tests start themselves."""
pytest_plugins = ["tests.fixtures.core", "tests.fixtures.policy", "tests.services"]
