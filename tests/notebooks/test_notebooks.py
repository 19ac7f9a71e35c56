"""The notebooks, executed end to end in real kernels (nbclient), and their key outputs checked.

01 runs on the built-in default sites; 02 runs through `python -m jupyter_split.demo`, the
README's demo command, and the test then reads what it left behind (checkpoints, manifests,
the audit log, the W&B run files) rather than trusting what the notebook printed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from jupyter_split import ckpt, core, demo, policy, tracking
from jupyter_split.tracking import sites as wandb_sites
from jupyter_split.config import default_config, parse_config
from jupyter_split.sync.manifest import Manifest
from tests.fixtures.core import stop_runners, write_config

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name: str, timeout: float = 600) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def cell_text(nb: nbformat.NotebookNode, starts: str) -> str:
    """The stream text of the first code cell whose source starts with `starts`."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts))
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def losses_fell(losses: list[list[float]]) -> bool:
    first = sum(loss for _, loss in losses[:3]) / 3
    last = sum(loss for _, loss in losses[-3:]) / 3
    return last < 0.8 * first


@pytest.mark.slow
def test_quickstart(split_home):
    nb = run_notebook("01-quickstart.ipynb")
    sites = cell_text(nb, "%load_ext")
    assert "config: built-in default" in sites and "abroad" in sites and "home (home)" in sites
    assert "hello from abroad (SG)" in cell_text(nb, "%%remote_gpu\nimport os")
    assert "still there: hello from abroad (SG)" in cell_text(nb, "%%remote_gpu\nprint")
    assert "ran at home (CN)" in cell_text(nb, "%%on home")
    total = next(c for c in nb.cells if c.source.startswith("%%remote_gpu --in numbers"))
    assert [o.data["text/plain"] for o in total.outputs if o.output_type == "execute_result"] == ["385"]
    assert "back in the notebook: 385" in cell_text(nb, 'print("back')
    assert "started on abroad (detached)" in cell_text(nb, "%%remote_gpu --detach")
    attached = cell_text(nb, "%split attach")
    assert "3\n2\n1\n" in attached and "--out variables delivered: answer" in attached and "answer: 42" in attached
    assert "3\n2\n1\n" in cell_text(nb, "%split logs")
    sessions = cell_text(nb, "%split session").splitlines()
    assert sessions[0].split()[:2] == ["site", "state"]
    assert {line.split()[0]: line.split()[1] for line in sessions[1:]} == {"abroad": "warm", "home": "warm"}
    top = cell_text(nb, "%split top")
    assert "abroad" in top and "home" in top and "cpu (" in top
    run = core.get_split().index.list(limit=1)[0]
    assert (run.site, run.name, run.state) == ("abroad", "countdown", "succeeded")


@pytest.mark.slow
def test_clusters_on_real_slurm_and_ray(split_home, slurm, ray_cluster, monkeypatch):
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)  # SLURM_CONF and friends, for the kernel and its sbatch calls
    write_config(split_home, f"""
[experiment]
home = "home"
default_remote = "slurm"
[sites.home]
jurisdiction = "CN"
accelerator = "cpu"
[sites.slurm]
executor = "slurm"
jurisdiction = "SG"
accelerator = "cpu"
python = "{sys.executable}"
workdir = "{split_home}/slurm"
[sites.ray]
executor = "ray"
jurisdiction = "MY"
accelerator = "cpu"
python = "{sys.executable}"
workdir = "{split_home}/ray"
ray = {{ address = "{ray_cluster.address}" }}
""")
    monkeypatch.setenv("JUPYTER_SPLIT_CONFIG", str(split_home / "work" / "jupyter_split.toml"))
    nb = run_notebook("03-clusters.ipynb")
    on_slurm = cell_text(nb, "%%on slurm")
    assert "site 'slurm' (slurm, SG)" in on_slurm and "Slurm job -" not in on_slurm
    assert "site 'ray' (ray, MY)" in cell_text(nb, "%%on ray") and "Slurm job -" in cell_text(nb, "%%on ray")
    assert "the same result on both clusters: True" in cell_text(nb, "ray_scores = scores")
    runs = {r.site: r for r in core.get_split().list_runs(limit=10)}
    assert runs["slurm"].state == runs["ray"].state == "succeeded"
    assert runs["slurm"].handle["job_id"] and runs["slurm"].mode == "detached"
    # and with no cluster configured, the notebook stops at once and says what to write
    monkeypatch.delenv("JUPYTER_SPLIT_CONFIG")
    (split_home / "work" / "jupyter_split.toml").unlink()
    with pytest.raises(CellExecutionError, match=r"(?s)needs the sites \['slurm', 'ray'\].*write them into jupyter_split.toml"):
        run_notebook("03-clusters.ipynb")


@pytest.mark.slow
def test_split_training_through_the_demo_command(split_home, monkeypatch):
    output = split_home / "work" / "demo-output"
    done = subprocess.run([sys.executable, "-m", "jupyter_split.demo", "--output", str(output)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)
    data = output / "data"
    monkeypatch.setenv("JUPYTER_SPLIT_DATA", str(data))  # read what the demo left, and stop its runners
    core.reset()
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        index = core.get_split().index
        assert index.session("abroad") is None and index.session("home") is None  # the demo ended its sessions
        _check_split_training(done.stdout, output, data)
    finally:
        stop_runners(data)


def _check_split_training(printed: str, output: Path, data: Path) -> None:
    executed = nbformat.read(output / "02-split-training.ipynb", as_version=4)
    summary = demo.summary_of(executed)
    assert f"executed notebook: {output / '02-split-training.ipynb'}" in printed

    phases = {phase: (p["site"], p["jurisdiction"], p["state"]) for phase, p in summary["phases"].items()}
    assert phases == {"pretrain": ("abroad", "SG", "succeeded"), "finetune": ("home", "CN", "succeeded"),
                      "inference": ("home", "CN", "succeeded")}
    assert "pretrain   site 'abroad' (SG), succeeded" in printed and "finetune   site 'home' (CN), succeeded" in printed

    # losses fell on both sites: the W&B histories (written by each site) agree with the notebook
    runs = {r.run.job_type: r for r in wandb_sites.experiment_runs(core.get_split())}
    assert {job: r.site for job, r in runs.items()} == {"pretrain": "abroad", "finetune": "home", "inference": "home"}
    assert {r.run.group for r in runs.values()} == {"split-demo"}
    for job in ("pretrain", "finetune"):
        history = [(row["_step"], row["loss"]) for row in runs[job].run.history]
        assert losses_fell(history), (job, history)
        assert summary["losses"][job] == [pytest.approx(history[0][1]), pytest.approx(history[-1][1])]

    # the checkpoint came home, verified, and names where it was made
    storage = data / "storage"
    pulled_url = (storage / "home" / "tinylm-pretrain").as_uri()
    abroad_url = (storage / "abroad" / "tinylm-pretrain").as_uri()
    pulled = _manifest(storage / "home" / "tinylm-pretrain")
    assert pulled.site == "abroad" and pulled.labels == []
    assert summary["pulled"]["bytes"] == sum(f.size for f in pulled.files) > 0
    assert set(ckpt.load(pulled_url, device="cpu")) == set(ckpt.load(abroad_url, device="cpu"))

    # fine-tuned at home on resident data: labelled CN, lineage to the pulled copy
    finetuned = _manifest(storage / "home" / "tinylm-finetuned")
    assert finetuned.labels == ["CN"] and finetuned.parents == [pulled_url] and finetuned.site == "home"
    used = {u["url"]: u for u in runs["finetune"].run.config[tracking.USED_KEY]}
    assert used[pulled_url]["producer_site"] == "abroad"
    assert [a["metadata"]["labels"] for a in runs["finetune"].run.artifacts] == [["CN"]]

    # three refusals, in the audit log, before a byte moved
    refused = policy.audit_entries(decision="refused")
    assert sorted((r["kind"], r["item"], r["to_site"]) for r in refused) == sorted([
        ("copy", (storage / "home" / "tinylm-finetuned").as_uri(), "abroad"),
        ("copy", str(data / "pii"), "abroad"),
        ("variable", "finetuned_state", "abroad"),
    ])
    assert all(r["labels"] == ["CN"] for r in refused)
    assert not (storage / "abroad" / "leaked").exists()
    assert "refused by the residency guard: 3" in printed
    refusals = cell_text(executed, "from IPython.core.error import UsageError")
    assert refusals.count("REFUSED") == 3 and "must not happen" not in refusals
    assert "refused" in cell_text(executed, "%split audit")
    allowed_copies = [r for r in policy.audit_entries(decision="allowed") if r["kind"] == "copy"]
    assert {(r["from_site"], r["to_site"]) for r in allowed_copies} == {("abroad", "home")}

    # inference ran at home on the fine-tuned weights; both loss curves were drawn inline
    inference_text = cell_text(executed, "%%on home --in TinyLM,encode,decode,generate")
    assert "'Name: " in inference_text
    assert [u["url"] for u in runs["inference"].run.config[tracking.USED_KEY]] == [(storage / "home" / "tinylm-finetuned").as_uri()]
    plot = next(c for c in executed.cells if c.source.startswith("import matplotlib"))
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)


def _manifest(folder: Path) -> Manifest:
    return Manifest.from_json((folder / "manifest.json").read_text())


def test_demo_says_where_the_notebook_is_missing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jupyter_split.demo"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "notebooks/02-split-training.ipynb not found" in done.stderr and "repository's root" in done.stderr
    assert not (tmp_path / "demo-output").exists()


def test_run_script_names_the_notebooks_it_knows(tmp_path):
    done = subprocess.run([sys.executable, str(NOTEBOOKS / "run.py"), "04-nope.ipynb", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no notebook 04-nope.ipynb" in done.stderr and "01-quickstart.ipynb" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_never_empties_a_data_folder_it_did_not_make(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(demo.DemoError, match="not made by the demo"):
        demo.fresh_data_dir(tmp_path)
    assert (tmp_path / "data" / "keep.txt").read_text() == "mine"
    (tmp_path / "data" / "keep.txt").unlink()
    (tmp_path / "data").rmdir()
    made = demo.fresh_data_dir(tmp_path)
    (made / "old-run").mkdir()
    assert list(demo.fresh_data_dir(tmp_path).iterdir()) == [made / demo.MARKER]


def test_demo_uses_the_built_in_default_even_where_a_config_file_would_be_found(tmp_path, monkeypatch):
    for name in ("JUPYTER_SPLIT_DATA", "JUPYTER_SPLIT_CONFIG", "WANDB_MODE"):
        monkeypatch.setenv(name, "")  # restored after the test: isolate() sets them for its process
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "jupyter_split.toml").write_text('[sites.prod]\njurisdiction = "US"\n')
    data = demo.isolate(tmp_path / "out", tmp_path / "notebooks")
    written = Path(os.environ["JUPYTER_SPLIT_CONFIG"])
    assert written == (tmp_path / "out" / "jupyter_split.toml").resolve() and data == tmp_path / "out" / "data"
    config = parse_config(tomllib.loads(written.read_text()), str(written))
    assert config.model_dump(exclude={"source"}) == default_config().model_dump(exclude={"source"})
    # the data directory as the process was pointed at it: a short alias of `data` where its path is too
    # long for a session's socket
    pointed = Path(os.environ["JUPYTER_SPLIT_DATA"])
    assert pointed.resolve() == data.resolve()
    assert set(config.sites) == {"abroad", "home"} and config.policy.resident == [(pointed / "pii").as_uri() + "/**"]
