"""STAND-IN for torch_musa (see tests/stand_ins/__init__.py): registers a fake torch.musa for detection tests."""
from tests.stand_ins._vendor import register

register("musa", "MUSA_VISIBLE_DEVICES")
