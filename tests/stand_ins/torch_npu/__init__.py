"""STAND-IN for torch_npu (see tests/stand_ins/__init__.py): registers a fake torch.npu for detection tests."""
from tests.stand_ins._vendor import register

register("npu", "ASCEND_RT_VISIBLE_DEVICES")
