"""A real 2-process gloo run writes a sharded torch.distributed.checkpoint to the S3 server
(moto_server) "abroad"; one process "at home" consolidates it into a portable checkpoint."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

try:
    from torch.distributed.checkpoint import FsspecWriter
except ImportError:  # where newer torch keeps it
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecWriter

from jupyter_split import ckpt
from jupyter_split.ckpt import store as ckpt_store

WORLD = 2


@pytest.fixture(autouse=True)
def _isolated(split_home, monkeypatch):
    monkeypatch.setattr(ckpt_store, "LOADED", {})


def _full_state() -> dict:
    """The unsharded truth; every rank builds the same one from the seed."""
    torch.manual_seed(1234)
    return {
        "model": {
            "embed.weight": torch.randn(10, 16).to(torch.bfloat16),
            "block.0.attn.weight": torch.randn(16, 16),
            "block.0.attn.bias": torch.randn(5),      # 5 rows over 2 ranks: uneven chunks
            "head.weight": torch.randn(7, 16).to(torch.bfloat16),
        },
        "optim": {"exp_avg": {"head.weight": torch.randn(7, 16)}, "step": 300,
                  "param_groups": [{"lr": 1e-4, "betas": [0.9, 0.95]}]},
        "position_ids": torch.arange(16),             # replicated: written once, by rank 0
    }


def _dcp_worker(rank: int, init_file: str, url: str, options: dict) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        mesh = init_device_mesh("cpu", (WORLD,))
        full = _full_state()
        shard = lambda t: distribute_tensor(t, mesh, [Shard(0)])  # noqa: E731
        state = {
            "model": {k: shard(v) for k, v in full["model"].items()},
            "optim": {"exp_avg": {k: shard(v) for k, v in full["optim"]["exp_avg"].items()},
                      "step": full["optim"]["step"], "param_groups": full["optim"]["param_groups"]},
            "position_ids": full["position_ids"],
        }
        dcp.save(state, storage_writer=FsspecWriter(url, **options))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_rank_gloo_dcp_on_s3_consolidates_at_home(s3, tmp_path):
    bucket = s3.make_bucket("train-abroad")
    dcp_url = f"{bucket}/run-7/step-300"
    mp.spawn(_dcp_worker, args=(str(tmp_path / "init"), dcp_url, s3.storage_options), nprocs=WORLD, join=True)
    written = [p.rsplit("/", 1)[-1] for p in s3.filesystem().ls(dcp_url)]
    assert ".metadata" in written and sum(name.endswith(".distcp") for name in written) == WORLD

    home = (tmp_path / "home" / "step-300").as_uri()
    manifest = ckpt.consolidate(dcp_url, home, max_shard_size="600B", storage_options=s3.storage_options)
    assert manifest.parents == [dcp_url] and manifest.meta["consolidated_from"] == dcp_url
    shards = [e.path for e in manifest.files if e.path.endswith(".safetensors")]
    assert len(shards) >= 3  # streamed a shard's worth at a time, not one big dict

    truth = _full_state()
    out = ckpt.load(home, dtype=torch.bfloat16)  # keep bf16 to compare bit for bit
    assert set(out) == {"model", "optim", "position_ids"}
    for key, value in truth["model"].items():
        got = out["model"][key]
        assert got.dtype == (value.dtype if value.dtype != torch.float32 else torch.bfloat16)
        assert torch.equal(got, value.to(got.dtype)), key
    exact = ckpt.load(home)
    assert torch.equal(exact["model"]["block.0.attn.bias"], truth["model"]["block.0.attn.bias"])
    assert torch.equal(exact["model"]["embed.weight"], truth["model"]["embed.weight"].float())
    assert torch.equal(exact["optim"]["exp_avg"]["head.weight"], truth["optim"]["exp_avg"]["head.weight"])
    assert exact["optim"]["step"] == 300
    assert exact["optim"]["param_groups"] == [{"lr": 1e-4, "betas": [0.9, 0.95]}]
    assert torch.equal(exact["position_ids"], truth["position_ids"])


def test_not_a_dcp_folder_is_named(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no .metadata file.*not a finished torch.distributed.checkpoint"):
        ckpt.consolidate((tmp_path / "nothing").as_uri(), (tmp_path / "out").as_uri())
    assert not (tmp_path / "out").exists()


SINGLE_PROCESS_SAVE = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


@SINGLE_PROCESS_SAVE
def test_pickled_objects_in_a_dcp_folder_are_refused_not_run(tmp_path):
    folder = tmp_path / "dcp"
    dcp.save({"w": torch.ones(3), "sched": Fraction(1, 3)}, checkpoint_id=str(folder), no_dist=True)
    with pytest.raises(ckpt.CheckpointError, match="'sched' is a pickled fractions.Fraction, not plain data"):
        ckpt.consolidate(str(folder), (tmp_path / "out").as_uri())
    assert not (tmp_path / "out").exists()  # refused before a shard was written


@SINGLE_PROCESS_SAVE
def test_local_dcp_folder_consolidates_with_nesting(tmp_path):
    folder = tmp_path / "dcp"
    # DCP pickles the tuple (tensor and all) as one value, and walks the list of dicts
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 2, "extra": {"rng": (1, torch.ones(2))},
             "groups": [{"scale": torch.ones(1)}, 3]}
    dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    dest = tmp_path / "portable"
    manifest = ckpt.consolidate(str(folder), str(dest))
    tree = json.loads((dest / "state.json").read_text())["tree"]
    assert tree["model"] == {"w": {"$t": "model.w"}} and tree["epoch"] == 2
    assert manifest.meta["tensors"] == 3  # the tensor inside the pickled tuple got a shard too
    out = ckpt.load(str(dest))
    assert out["epoch"] == 2 and torch.equal(out["model"]["w"], torch.arange(6.0).reshape(2, 3))
    assert out["extra"]["rng"][0] == 1 and torch.equal(out["extra"]["rng"][1], torch.ones(2))
    assert isinstance(out["groups"], list) and out["groups"][1] == 3 and torch.equal(out["groups"][0]["scale"], torch.ones(1))
