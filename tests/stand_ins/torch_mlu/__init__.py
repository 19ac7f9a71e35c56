"""STAND-IN for torch_mlu (see tests/stand_ins/__init__.py): registers a fake torch.mlu for detection tests."""
from tests.stand_ins._vendor import register

register("mlu", "MLU_VISIBLE_DEVICES")
