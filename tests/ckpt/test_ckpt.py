"""Portable checkpoints on the real CPU, real files and the real S3 server (moto_server)."""
from __future__ import annotations

import gc
import hashlib
import io
import json
import math
import os
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open

from jupyter_split import ckpt, policy, verified
from jupyter_split.ckpt import store as ckpt_store
from jupyter_split.ckpt import files as ckpt_files
from jupyter_split.ckpt.format import FormatError, parse_size, read_shard, write_aligned
from jupyter_split.config import ConfigError
from jupyter_split.accelerators.devices import detect
from jupyter_split.sync.manifest import read_manifest
from tests.fixtures.policy import policy_config  # two sites: home CN, sg SG


@pytest.fixture(autouse=True)
def _isolated(split_home, monkeypatch):
    """Own data dir and config (the audit log lands there); no lineage from other tests."""
    monkeypatch.setattr(ckpt_store, "LOADED", {})
    return split_home


def _model_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
    return {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}


def _training_state() -> dict:
    model = _model_state()
    return {
        "model": model,
        "optim": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.ones(3, 4)}},
                  "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.95), "params": [0], "clip": math.inf}]},
        "step": 1200,
        "mask": torch.tensor([True, False, True]),
        "ids": torch.arange(10, dtype=torch.int64),
        "empty": torch.zeros(0, 5),
        "name": "llm-split",
        "blob": b"\x00\x01",
        "dtype": torch.bfloat16,
        "rng": np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::-1],  # numpy, not contiguous
        "loss": np.float32(0.5),
    }


def test_roundtrip_keeps_structure_and_values_bf16_widened_on_cpu(tmp_path):
    state = _training_state()
    url = (tmp_path / "step-1200").as_uri()
    manifest = ckpt.save(state, url)
    assert manifest.meta["dtypes"]["BF16"] == 4 and manifest.meta["source_device"] == "cpu"
    out = ckpt.load(url)
    # the CPU lacks native bf16 compute (see devices.detect): bf16 comes back as fp32, exactly
    assert detect().supports("bfloat16") is False
    for key, value in state["model"].items():
        assert out["model"][key].dtype == torch.float32
        assert torch.equal(out["model"][key], value.float())
    assert out["optim"]["state"][0]["exp_avg"].dtype == torch.float32
    assert torch.equal(out["optim"]["state"][0]["step"], torch.tensor(7.0))
    assert out["optim"]["param_groups"] == [{"lr": 3e-4, "betas": (0.9, 0.95), "params": [0], "clip": math.inf}]
    assert out["step"] == 1200 and out["name"] == "llm-split" and out["blob"] == b"\x00\x01"
    assert out["dtype"] is torch.bfloat16
    assert torch.equal(out["mask"], state["mask"]) and out["ids"].dtype == torch.int64
    assert out["empty"].shape == (0, 5)
    assert isinstance(out["rng"], np.ndarray) and (out["rng"] == state["rng"]).all() and out["loss"] == 0.5


def test_explicit_dtype_keeps_bf16_or_casts_all_floats(tmp_path):
    url = (tmp_path / "c").as_uri()
    ckpt.save({"w": torch.randn(4, 4).bfloat16(), "n": torch.arange(3)}, url)
    kept = ckpt.load(url, dtype=torch.bfloat16)
    assert kept["w"].dtype == torch.bfloat16
    half = ckpt.load(url, device="cpu", dtype=torch.float16)
    assert half["w"].dtype == torch.float16 and half["n"].dtype == torch.int64
    with pytest.raises(ckpt.CheckpointError, match="dtype=torch.int8 is not a floating dtype"):
        ckpt.load(url, dtype=torch.int8)


def test_shards_are_bounded_and_readable_by_safetensors(tmp_path):
    state = {f"layer{i}.weight": torch.full((256, 256), float(i)) for i in range(10)}  # 256 KiB each
    state["big"] = torch.zeros(1024, 1024)  # 4 MiB: over the bound, so a shard of its own
    root = tmp_path / "sharded"
    manifest = ckpt.save(state, root.as_uri(), max_shard_size="600KiB")
    shards = sorted(p for p in root.iterdir() if p.suffix == ".safetensors")
    assert len(shards) == 6
    for shard in shards:
        with safe_open(str(shard), "pt") as handle:
            meta = handle.metadata()
            sizes = [handle.get_tensor(k).numel() * 4 for k in handle.keys()]
        assert meta["jupyter_split"] == "jupyter_split.ckpt/1" and meta["source_device"] == "cpu"
        assert sum(sizes) <= 600 * 1024 or len(sizes) == 1
    assert {e.path for e in manifest.files} == {p.name for p in shards} | {"state.json"}
    out = ckpt.load(root.as_uri())
    assert all(torch.equal(out[k], v) for k, v in state.items())


def test_a_safetensors_file_from_the_library_reads_as_the_library_reads_it(tmp_path):
    """Views of every dtype and shape, unaligned offsets included (the library packs tensors)."""
    from safetensors.torch import load_file, save_file

    state = {"a_odd": torch.arange(3, dtype=torch.uint8), "b_f32": torch.randn(5, 7), "c_scalar": torch.tensor(2.5),
             "d_empty": torch.zeros(0, 3, dtype=torch.float16), "e_bf16": torch.randn(2, 3, 4).bfloat16(),
             "f_i64": torch.arange(6).reshape(3, 2)}
    path = tmp_path / "lib.safetensors"
    save_file(state, path)
    ours = read_shard(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8), str(path))
    theirs = load_file(path)
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and ours[name].shape == tensor.shape and ours[name].is_contiguous()
        assert torch.equal(ours[name], tensor), name
    # another writer may pack a float32 right after 3 bytes: copied to be viewed, not misread
    header = json.dumps({"u8": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
                         "f32": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]}}).encode()
    header += b" " * (-len(header) % 8)
    packed = len(header).to_bytes(8, "little") + header + bytes([1, 2, 3]) + torch.tensor([1.5, -2.0]).numpy().tobytes()
    out = read_shard(torch.frombuffer(bytearray(packed), dtype=torch.uint8), "packed")
    assert out["u8"].tolist() == [1, 2, 3] and out["f32"].tolist() == [1.5, -2.0]


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    emb = torch.randn(50, 8)
    url = (tmp_path / "tied").as_uri()
    manifest = ckpt.save({"embed.weight": emb, "lm_head.weight": emb}, url)
    assert manifest.meta["tensors"] == 1
    out = ckpt.load(url)
    assert out["embed.weight"] is out["lm_head.weight"]


def test_a_corrupted_shard_is_named(tmp_path):
    root = tmp_path / "bad"
    ckpt.save({f"w{i}": torch.randn(128, 128) for i in range(4)}, root.as_uri(), max_shard_size="64KiB")
    victim = root / "model-00003-of-00004.safetensors"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match=r"model-00003-of-00004\.safetensors is corrupt: sha256"):
        ckpt.load(root.as_uri())
    victim.write_bytes(bytes(data[:-1]))
    with pytest.raises(ckpt.CheckpointError, match=r"model-00003-of-00004\.safetensors is corrupt: its size"):
        ckpt.load(root.as_uri())
    victim.unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"model-00003-of-00004\.safetensors is missing"):
        ckpt.load(root.as_uri())


def _age(root, seconds: float = 1.0) -> None:
    """Set every file's mtime `seconds` back, as if saved that long ago (ctime moves to now)."""
    for path in root.iterdir():
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


class _CountingHashlib:
    def __init__(self):
        self.hashed = 0

    def sha256(self, *data):
        self.hashed += bool(data)
        return hashlib.sha256(*data)


def test_a_file_hashed_before_and_unchanged_is_not_read_again_and_a_change_is_caught(tmp_path, monkeypatch):
    root = tmp_path / "known"
    state = {f"w{i}": torch.randn(128, 128) for i in range(4)}
    manifest = ckpt.save(state, root.as_uri(), max_shard_size="64KiB")
    _age(root)
    counting = _CountingHashlib()
    monkeypatch.setattr(ckpt_files, "hashlib", counting)
    ckpt.load(root.as_uri())  # hashes every file, and records each
    assert counting.hashed == len(manifest.files)
    shard = root / "model-00002-of-00004.safetensors"
    assert verified.known_sha256(shard.stat()) == manifest.by_path()[shard.name].sha256

    counting.hashed = 0
    out = ckpt.load(root.as_uri())
    assert counting.hashed == 0 and all(torch.equal(out[k], v) for k, v in state.items())
    ckpt.load(root.as_uri(), verify="always")
    assert counting.hashed == len(manifest.files)
    # another data directory is another record store: what this process saw of the first does not count there
    data = os.environ["JUPYTER_SPLIT_DATA"]
    monkeypatch.setenv("JUPYTER_SPLIT_DATA", str(tmp_path / "other-data"))
    assert verified.known_sha256(shard.stat()) is None
    monkeypatch.setenv("JUPYTER_SPLIT_DATA", data)
    assert verified.known_sha256(shard.stat()) == manifest.by_path()[shard.name].sha256

    # same size, mtime put back: the ctime still moves, so the record no longer applies
    before = shard.stat()
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ckpt.CheckpointError, match=r"model-00002-of-00004\.safetensors is corrupt: sha256"):
        ckpt.load(root.as_uri())
    with pytest.raises(ckpt.CheckpointError, match=r"verify='sometimes' is not one of 'auto'"):
        ckpt.load(root.as_uri(), verify="sometimes")


class _WriteLog(io.BytesIO):
    """A file that notes where each write began and how long it was."""

    def __init__(self):
        super().__init__()
        self.writes: list[tuple[int, int]] = []

    def write(self, data) -> int:
        self.writes.append((self.tell(), len(memoryview(data).cast("B"))))
        return super().write(data)


def test_shard_writes_start_and_end_on_huge_page_boundaries_and_keep_every_byte():
    mib = 1 << 20
    rng = np.random.default_rng(0)
    sizes = [3 * mib + 5, 7, 2 * mib, 0, 11 * mib + 1, 1, 2 * mib - 1, 19 * mib]  # the first is a header over 2 MiB
    pieces = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    out = _WriteLog()
    write_aligned(out, pieces)
    assert out.getvalue() == b"".join(pieces)
    assert all(length for _, length in out.writes)
    assert all(start % (2 * mib) == 0 for start, _ in out.writes)
    assert all((start + length) % (2 * mib) == 0 for start, length in out.writes[:-1])


def test_a_loaded_shard_is_mapped_for_huge_pages(tmp_path):
    if not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        pytest.skip("this kernel has no transparent huge pages, so there is no huge-page advice to give")
    root = tmp_path / "huge"
    state = {f"w{i}": torch.randn(1000 + i, 700) for i in range(4)}  # 2.7 MB each: boundaries inside huge pages
    ckpt.save(state, root.as_uri())
    shard = next(root.glob("*.safetensors"))
    out = ckpt.load(root.as_uri())
    assert all(torch.equal(out[k], v) for k, v in state.items())
    with open("/proc/self/smaps") as smaps:
        mappings = re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", smaps.read())  # one block per mapping, its line first
    flags = [re.search(r"^VmFlags:(.*)$", block, re.M).group(1).split()
             for block in mappings if block.split("\n", 1)[0].endswith(str(shard))]
    assert flags and all("hg" in each for each in flags), flags  # hg: madvise(MADV_HUGEPAGE) took


def test_a_loaded_state_lets_go_of_its_mapped_files_as_soon_as_it_is_dropped(tmp_path):
    root = tmp_path / "mapped"
    ckpt.save({"a": {"w": torch.randn(64, 64)}, "b": [torch.ones(3)]}, root.as_uri())

    def mapped() -> int:
        with open("/proc/self/maps") as maps:
            return sum(str(root) in line for line in maps)

    gc.disable()  # no cycle collection to hide a reference cycle
    try:
        out = ckpt.load(root.as_uri())
        assert mapped() > 0
        del out
        assert mapped() == 0
    finally:
        gc.enable()


def test_a_hash_taken_in_the_racy_window_of_a_write_is_not_recorded(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    sha = hashlib.sha256(b"abc").hexdigest()
    st = path.stat()
    verified.remember(st, st.st_mtime_ns + verified.RACY_NS // 2, sha)  # a write in that tick could follow unseen
    assert verified.known_sha256(path.stat()) is None
    verified.remember(st, st.st_mtime_ns + verified.RACY_NS, sha)
    assert verified.known_sha256(path.stat()) == sha
    os.utime(path, ns=(st.st_atime_ns, 1_700_000_000 * 10**9))  # whole seconds: a coarse filesystem's stamps
    coarse = path.stat()
    verified.remember(coarse, coarse.st_mtime_ns + verified.RACY_NS, sha)
    assert verified.known_sha256(path.stat()) is None
    verified.remember(coarse, coarse.st_mtime_ns + verified.COARSE_RACY_NS, sha)
    assert verified.known_sha256(path.stat()) == sha


def test_lazy_load_reads_one_shard_at_a_time(tmp_path):
    root = tmp_path / "lazy"
    state = {f"w{i}": torch.full((128, 128), float(i)) for i in range(4)}
    ckpt.save(state, root.as_uri(), max_shard_size="64KiB")
    # break the last shard: a lazy reader must still serve the others, and name it when reached
    last = root / "model-00004-of-00004.safetensors"
    last.write_bytes(last.read_bytes()[:-1] + b"\x00")
    lazy = ckpt.load(root.as_uri(), lazy=True)
    assert sorted(lazy) == ["w0", "w1", "w2", "w3"] and len(lazy.shard_names()) == 4
    assert torch.equal(lazy["w1"], state["w1"])
    shards = lazy.iter_shards()
    assert list(next(shards)) == ["w0"]
    assert list(next(shards)) == ["w1"]
    assert torch.equal(next(shards)["w2"], state["w2"])
    with pytest.raises(ckpt.CheckpointError, match="model-00004-of-00004.safetensors is corrupt"):
        next(shards)


def test_unpublished_folder_and_existing_checkpoint_errors(tmp_path):
    url = (tmp_path / "c").as_uri()
    with pytest.raises(ckpt.CheckpointError, match="no manifest.json.*consolidate"):
        ckpt.load(url)
    ckpt.save({"w": torch.ones(2)}, url)
    with pytest.raises(ckpt.CheckpointError, match="already holds a published checkpoint; pass overwrite=True"):
        ckpt.save({"w": torch.zeros(2)}, url)
    assert torch.equal(ckpt.load(url)["w"], torch.ones(2))  # the refused save lost nothing
    ckpt.save({"w": torch.zeros(2)}, url, overwrite=True)
    assert torch.equal(ckpt.load(url)["w"], torch.zeros(2))


def test_unsavable_values_are_named_before_anything_is_written(tmp_path):
    root = tmp_path / "never"
    with pytest.raises(FormatError, match=r"state\['optim'\]\['sched'\]: a builtins.object cannot be saved portably"):
        ckpt.save({"w": torch.ones(1), "optim": {"sched": object()}}, root.as_uri())
    assert not root.exists()
    with pytest.raises(FormatError, match="meta tensor has no data"):
        ckpt.save({"w": torch.empty(3, device="meta")}, root.as_uri())
    with pytest.raises(FormatError, match="max_shard_size='lots' is not a size"):
        parse_size("lots")
    with pytest.raises(FormatError, match="is not a size"):
        parse_size("1..2MB")
    assert parse_size("1GiB") == 1 << 30 and parse_size("512MB") == 512_000_000


def test_unknown_device_is_a_clear_error(tmp_path):
    url = (tmp_path / "c").as_uri()
    ckpt.save({"w": torch.ones(2)}, url)
    with pytest.raises(RuntimeError, match="device 'cuda:0' is not usable here"):
        ckpt.load(url, device="cuda:0")


def test_manifest_carries_lineage_from_loaded_checkpoints(tmp_path):
    parent = (tmp_path / "pretrained").as_uri()
    ckpt.save({"w": torch.ones(2)}, parent)
    ckpt.load(parent)
    child = ckpt.save({"w": torch.ones(2) * 2}, (tmp_path / "finetuned").as_uri(), parents=["hf://org/base"])
    assert parent in child.parents and "hf://org/base" in child.parents


@pytest.mark.slow
def test_save_and_load_through_s3(s3, tmp_path):
    bucket = s3.make_bucket("ckpt-sg")
    url = f"{bucket}/run-1/step-10"
    state = _training_state()
    ckpt.save(state, url, max_shard_size="16KiB", storage_options=s3.storage_options)
    fs = s3.filesystem()
    manifest = read_manifest(fs, url)
    assert manifest is not None and len(manifest.files) > 3
    doc = json.loads(fs.cat_file(f"{url}/state.json"))
    assert doc["tree"]["step"] == 1200
    out = ckpt.load(url, dtype=torch.bfloat16, storage_options=s3.storage_options)
    assert all(torch.equal(out["model"][k], v) for k, v in state["model"].items())


def test_labels_travel_into_manifest_and_shard_metadata(_isolated):
    policy_config(_isolated)
    weights = policy.label(torch.randn(4, 4), "CN")
    url = (_isolated / "home-store" / "ft").as_uri()
    manifest = ckpt.save({"w": weights, "b": torch.zeros(4)}, url)
    assert manifest.labels == ["CN"]
    with safe_open(str(_isolated / "home-store" / "ft" / "model-00001-of-00001.safetensors"), "pt") as handle:
        assert handle.metadata()["labels"] == "CN"
    # what this process makes after reading labelled data carries the label, and names its parent
    ckpt.load(url)
    child = ckpt.save({"w": torch.ones(2)}, (_isolated / "home-store" / "child").as_uri())
    assert child.labels == ["CN"] and child.parents == [url]


def test_labelled_state_is_refused_abroad_before_a_byte_moves(_isolated):
    policy_config(_isolated)
    state = {"w": policy.label(torch.randn(4, 4), "CN")}
    dest = _isolated / "sg-store" / "ckpt"
    with pytest.raises(policy.ResidencyError) as refused:
        ckpt.save(state, dest.as_uri())
    assert "CN" in str(refused.value)
    assert not dest.exists()
    records = [json.loads(line) for line in (_isolated / "data" / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["decision"] == "refused" and records[-1]["kind"] == "checkpoint"
    ckpt.save({"w": torch.randn(4, 4)}, dest.as_uri())  # unlabelled state may go (audited)
    assert (dest / "manifest.json").exists()


def test_a_checkpoint_in_a_resident_location_is_labelled(_isolated):
    policy_config(_isolated)
    manifest = ckpt.save({"w": torch.ones(2)}, (_isolated / "pii" / "ckpt").as_uri())
    assert manifest.labels == ["CN"]


def test_saved_abroad_synced_home_and_loaded_there(_isolated):
    """The sync engine carries the checkpoint's manifest metadata, so the copy loads (and verifies) at home."""
    from jupyter_split import sync

    policy_config(_isolated)
    abroad, home = (_isolated / "sg-store" / "step-9").as_uri(), (_isolated / "home-store" / "step-9").as_uri()
    state = _model_state()
    ckpt.save(state, abroad)
    report = sync.copy(abroad, home)
    assert report.published and report.files_sent == 2  # one shard and state.json
    out = ckpt.load(home)
    assert all(torch.equal(out[k], v.float()) for k, v in state.items())
    assert ckpt.load(home, lazy=True).manifest.meta["format"] == "jupyter_split.ckpt/1"


def test_bf16_becomes_fp16_where_the_device_has_fp16_only(tmp_path):
    """The dtype mapping of a card with fp16 but no bf16 (an Ascend 910A). No such card exists here, so
    its profile is a STAND-IN DeviceInfo whose tensors live on the CPU; the casts themselves are real."""
    from jupyter_split.accelerators.devices import DeviceInfo

    fp16_only = DeviceInfo(kind="npu", type="cpu", count=1, bf16=False, fp16=True, dist_backend="hccl")
    url = (tmp_path / "c").as_uri()
    big = torch.tensor([1e5, -3.0]).bfloat16()  # beyond fp16's 65504
    ckpt.save({"w": torch.randn(8, 8).bfloat16(), "big": big, "f32": torch.ones(2)}, url)
    with pytest.warns(RuntimeWarning, match="big exceeds fp16's range; loaded as fp32"):
        out = ckpt.load(url, device=fp16_only)
    assert out["w"].dtype == torch.float16 and out["f32"].dtype == torch.float32
    assert out["big"].dtype == torch.float32 and out["big"][0].item() == big[0].float().item()


def test_site_paths_and_latest_as_push_and_pull_take_them(_isolated):
    policy_config(_isolated)
    for step in (1, 2):
        ckpt.save({"step": step, "w": torch.full((2,), float(step))}, f"sg:run-1/step-{step}")
    assert (_isolated / "sg-store" / "run-1" / "step-2" / "manifest.json").exists()
    newest = ckpt.load("sg:run-1/@latest")
    assert newest["step"] == 2 and torch.equal(newest["w"], torch.full((2,), 2.0))
    with pytest.raises(ConfigError, match="'nowhere' is not a site"):
        ckpt.load("nowhere:run-1")
