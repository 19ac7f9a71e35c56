"""The doors of the house that take input: the server's bodies, names, the config file, CLI options.

Each door is tried with what an attacker or a slip of the hand would give it: a checkpoint
name that climbs out of the site's storage, JSON bodies of the wrong shape, a NUL in a run's
name, a workdir with `=` in it on a real sshd, file and checkpoint names with `\\`, control
characters, `#` and `?` on SFTP storage, a config that is not UTF-8 or holds impossible
values, and numeric options out of range. Each must be refused at entry with a message that
names the thing and the fix, and leave nothing behind where it should not be.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split import aio, ckpt, cli, core, sync
from jupyter_split.config import ConfigError, load_config, parse_config
from jupyter_split.names import NameRefused
from tests.fixtures.core import text as stream_text, tracebacks
from tests.fixtures.policy import policy_config, sftp_options, toml_table

pytest_plugins = ["pytest_jupyter.jupyter_server"]


def _two_sites(root: Path, sg_storage: str | None = None, sg_options: dict | None = None) -> None:
    """home (CN) at root/home-store and sg (SG) at root/a/store: a name that climbs out of
    home's storage and is copied to the same path on sg lands where neither site stores."""
    (root / "a" / "store").mkdir(parents=True, exist_ok=True)
    sg = f'storage = "{sg_storage or (root / "a" / "store").as_uri()}"'
    if sg_options:
        sg += f"\nstorage_options = {toml_table(sg_options)}"
    policy_config(root, sg=sg)


def _publish(folder: Path, url: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(b"w" * 1000)
    sync.copy(str(folder), url, progress=False)


# -- 1. the server -------------------------------------------------------------------------

@pytest.fixture
def jp_server_config(split_home: Path) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}}}


def _post(jp_fetch, body: bytes, *path: str):
    return jp_fetch("jupyter-split", *(path or ("checkpoints", "transfer")), method="POST", body=body)


async def _refused(jp_fetch, body: bytes, *path: str) -> str:
    with pytest.raises(HTTPClientError) as err:
        await _post(jp_fetch, body, *path)
    assert err.value.code == 400, f"{body[:60]!r} answered {err.value.code}"
    return json.loads(err.value.response.body)["message"]


async def test_a_transfer_name_that_leaves_the_storage_is_400(jp_fetch, split_home: Path) -> None:
    _two_sites(split_home)
    # A published checkpoint beside home's storage, not in it: reachable only by climbing out.
    _publish(split_home / "src", (split_home / "x" / "ck").as_uri())
    for name in ("../x/ck", "ckpts/../../x/ck", "/../x/ck"):
        body = json.dumps({"site": "home", "name": name, "to_site": "sg"}).encode()
        message = await _refused(jp_fetch, body)
        assert "`name`" in message and "'..'" in message and "leave the site's storage" in message, message
    assert not (split_home / "a" / "x").exists(), "a name with .. wrote outside sg's storage"
    assert list((split_home / "a" / "store").iterdir()) == []


BAD_BODIES = {
    "array": (b"[]", "must be a JSON object"),
    "null": (b"null", "not null"),
    "number": (b"123", "not a number"),
    "string": (b'"home"', "not a string"),
    "deep nesting": (b"[" * 10_000 + b"]" * 10_000, "nests 10000 levels"),
    "deep object": (b'{"site": ' * 5_000 + b"1" + b"}" * 5_000, "nests 5000 levels"),
    "not JSON": (b"{site: home}", "not JSON"),
    "not UTF-8": (b'{"site": "\xff"}', "not JSON"),
    "wrong type": (b'{"site": 1, "name": "ckpts/x", "to_site": "sg"}', "`site`"),
    "list for a name": (b'{"site": "home", "name": ["ckpts/x"], "to_site": "sg"}', "`name`"),
    "unknown field": (b'{"site": "home", "name": "ckpts/x", "to_site": "sg", "overwrite": true}',
                      "`overwrite` is not a field"),
    "empty name": (b'{"site": "home", "name": "", "to_site": "sg"}', "`name`"),
    "NUL in name": (b'{"site": "home", "name": "ck\\u0000x", "to_site": "sg"}', "U+0000"),
    "tab in name": (b'{"site": "home", "name": "ck\\tx", "to_site": "sg"}', "U+0009"),
    "hash in name": (b'{"site": "home", "name": "ck#x", "to_site": "sg"}', "U+0023"),
    "backslash in name": (b'{"site": "home", "name": "ck\\\\x", "to_site": "sg"}', "U+005C"),
    "huge": (b'{"site": "' + b"h" * 100_000 + b'"}', "at most"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_every_bad_transfer_body_is_400_with_the_reason(jp_fetch, split_home: Path, case: str) -> None:
    _two_sites(split_home)
    body, words = BAD_BODIES[case]
    message = await _refused(jp_fetch, body)
    assert words in message, message
    assert list((split_home / "a" / "store").iterdir()) == [], "a refused request moved bytes"


@pytest.mark.parametrize("body", [b"[]", b"null", b"123", b'{"now": true}', b"[" * 10_000])
async def test_cancel_takes_no_body_but_an_empty_one(jp_fetch, split_home: Path, body: bytes) -> None:
    message = await _refused(jp_fetch, body, "runs", "some-run", "cancel")
    assert "request body" in message, message


async def test_a_negative_limit_is_400(jp_fetch) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "runs", params={"limit": "-1"})
    assert err.value.code == 400 and "limit=-1" in json.loads(err.value.response.body)["message"]


async def test_a_transfer_without_a_token_is_refused_before_its_body(jp_fetch, split_home: Path) -> None:
    _two_sites(split_home)
    _publish(split_home / "src", (split_home / "x" / "ck").as_uri())
    body = json.dumps({"site": "home", "name": "../x/ck", "to_site": "sg"}).encode()
    headers = {"Authorization": "", "Cookie": "_xsrf=deadbeef", "X-XSRFToken": "deadbeef"}
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "checkpoints", "transfer", method="POST", body=body, headers=headers)
    assert err.value.code in (401, 403)
    assert not (split_home / "a" / "x").exists()


# -- 2. names ------------------------------------------------------------------------------

def test_a_nul_in_a_run_name_is_refused_and_the_session_lives(kernel) -> None:
    kernel.ok("%%on home\nx = 41")
    outputs, reply = kernel.run("get_ipython().run_cell_magic('on', 'home --name ' + 'a' + chr(0) + 'b', 'print(x)')")
    assert reply["status"] == "error"
    text = tracebacks(outputs) + stream_text(outputs)  # IPython prints a UsageError on stderr
    assert "--name" in text and "U+0000" in text and "Remove or replace" in text, text
    printed = "".join(o.get("text", "") for o in kernel.ok("%%on home\nprint(x + 1)"))
    assert "42" in printed, "the session lost its namespace after a refused --name"


def test_a_control_character_in_a_run_name_is_refused_by_the_python_api_and_the_cli(split_home: Path, capsys) -> None:
    with pytest.raises(NameRefused, match=r"--name 'a\\x00b' has '\\x00' \(U\+0000, NUL\) at position 1"):
        core.CellOptions(site="home", name="a\0b")
    cell = split_home / "work" / "cell.py"
    cell.write_text("print('ran')\n")
    assert cli.main(["run", "home", str(cell), "--name", "a\tb"]) == 2
    err = capsys.readouterr().err
    assert "U+0009" in err and "Traceback" not in err and "ran" not in err


@pytest.mark.slow
def test_a_workdir_with_an_equals_sign_bootstraps_over_ssh(sshd, split_home: Path, capfd) -> None:
    # env(1) took `/…/w=x/env/venv/bin/python` for an assignment and ran coreutils `install`.
    root = Path(tempfile.mkdtemp(prefix="jse-", dir="/tmp"))  # short: the runner's socket path must fit
    try:
        workdir = root / "w=x" / "run=3"
        raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
               "sites": {"sg": sshd.site(workdir=str(workdir)), "home": {"jurisdiction": "CN"}}}
        split = core.Split(parse_config(raw, "test"))
        ex = split.executor("sg")
        report = aio.run(ex.doctor())
        assert report["status"] == "ok" and report["installed_now"], report
        assert report["runner_python"] == str(workdir / "env" / "venv" / "bin" / "python")
        assert "unrecognized option" not in capfd.readouterr().err
        seen: list[dict] = []
        namespace = {"n": 20}
        outcome = split.execute("import sys\nprint(sys.executable)\nm = n + 1",
                                core.CellOptions(site="sg", inputs=["n"], outputs=["m"]), namespace, seen.append)
        assert outcome.state == "succeeded", seen
        assert "".join(e["text"] for e in seen if e["type"] == "stream").startswith(str(workdir / "env" / "venv"))
        assert namespace["m"] == 21
        aio.run(ex.close())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_file_name_with_a_backslash_is_refused_before_any_byte_moves(split_home: Path, capsys) -> None:
    _two_sites(split_home)
    src = split_home / "src"
    (src / "logs").mkdir(parents=True)
    (src / "weights.bin").write_bytes(b"w" * 100)
    (src / "logs" / "a\\b.txt").write_text("a file name a manifest cannot read back")
    with pytest.raises(NameRefused, match=r"'logs/a\\\\b.txt' has '\\\\' \(U\+005C, REVERSE SOLIDUS\)"):
        sync.push(str(src), "sg:ckpts/one", progress=False)
    assert cli.main(["push", str(src), "sg:ckpts/two"]) == 2
    err = capsys.readouterr().err
    assert "logs/a\\\\b.txt" in err and "U+005C" in err and "Traceback" not in err, err
    assert list((split_home / "a" / "store").iterdir()) == [], "the refused copy sent files"


BAD_PATHS = ["a\tb", "a\rb", "a\nb", "a#b", "a?b", "c#d/e#f", "a\\b", "a\x7fb", "a\x85b"]


@pytest.fixture
def sftp_site(split_home: Path, sshd) -> Path:
    store = split_home / "a" / "store"
    _two_sites(split_home, f"ssh://127.0.0.1:{sshd.port}{store}", sftp_options(sshd))
    return store


@pytest.mark.parametrize("name", BAD_PATHS, ids=repr)
def test_checkpoint_paths_a_url_parser_would_misread_are_refused(sftp_site: Path, split_home: Path, name: str) -> None:
    # On SFTP storage a tab, CR or LF vanished (`a<TAB>b` landed at `ab`); `#` and `?` were a TypeError
    # (`url_fragment`, `url_query`) from deep inside fsspec.
    import torch

    src = split_home / "src"
    src.mkdir(exist_ok=True)
    (src / "weights.bin").write_bytes(b"w" * 100)
    site = load_config().sites["sg"]
    storage, options = site.storage, site.storage_options
    attempts = {
        "push SITE:path": lambda: sync.push(str(src), f"sg:ck/{name}", progress=False),
        "push URL": lambda: sync.push(str(src), f"{storage}/ck/{name}", progress=False),
        "sync.copy URL": lambda: sync.copy(str(src), f"{storage}/cp/{name}", dest_options=options, progress=False),
        "ckpt.save SITE:path": lambda: ckpt.save({"w": torch.zeros(2)}, f"sg:cs/{name}"),
        "ckpt.save URL": lambda: ckpt.save({"w": torch.zeros(2)}, f"{storage}/cs/{name}"),
        "ckpt.load": lambda: ckpt.load(f"sg:cs/{name}"),
    }
    for face, attempt in attempts.items():
        with pytest.raises(NameRefused, match=r"U\+00[0-9A-F]{2}.*Remove or replace") as err:
            attempt()
        assert "checkpoint" in str(err.value), f"{face}: {err.value}"
    assert list(sftp_site.iterdir()) == [], "a refused name left a checkpoint somewhere else"


def test_a_site_path_that_climbs_out_is_refused_on_every_face(split_home: Path, capsys) -> None:
    _two_sites(split_home)
    _publish(split_home / "src", (split_home / "x" / "ck").as_uri())
    with pytest.raises(NameRefused, match="leave the site's storage"):
        sync.pull("home:../x/ck", "sg:ck", progress=False)
    with pytest.raises(NameRefused, match="leave the site's storage"):
        ckpt.load("home:../x/ck")
    assert cli.main(["push", str(split_home / "src"), "sg:../../escaped"]) == 2
    assert "leave the site's storage" in capsys.readouterr().err
    assert not (split_home / "escaped").exists() and not (split_home / "a" / "escaped").exists()


# -- 3. the config -------------------------------------------------------------------------

BASE = b'[experiment]\nhome = "home"\ndefault_remote = "home"\n[sites.home]\njurisdiction = "CN"\n'
BAD_CONFIGS = {
    "not UTF-8": (BASE + b'# caf\xe9\n', ["byte 0xe9 at byte offset 89", "line 6", "save the file as UTF-8"]),
    "port -5": (BASE + b"port = -5\n", ["`sites.home.port`", "-5 is not a TCP port", "1 to 65535"]),
    "port 99999999": (BASE + b"port = 99999999\n", ["`sites.home.port`", "1 to 65535"]),
    "connect_timeout -1": (BASE + b"connect_timeout = -1\n", ["`sites.home.connect_timeout`", "above 0"]),
    "keepalive nan": (BASE + b"keepalive_interval = nan\n", ["`sites.home.keepalive_interval`", "0 for no keepalives"]),
    "unknown protocol": (BASE + b'storage = "nosuchproto://bucket/x"\n',
                         ["`sites.home.storage`", "'nosuchproto'", "Fix the URL", "jupyter_split[s3]"]),
    "unknown chained protocol": (BASE + b'storage = "simplecache::nosuch://b/x"\n', ["'nosuch'"]),
    "env name with =": (BASE + b'env = { "A=B" = "1" }\n', ["`sites.home.env`", "'A=B' is not an environment variable"]),
    "NUL in an env value": (BASE + b'env = { A = "x\\u0000y" }\n', ["`sites.home.env.A`", "has a NUL"]),
    "NUL in a W&B entity": (BASE + b'[sites.home.wandb]\nentity = "a\\u0000b"\n', ["`sites.home.wandb.entity`", "NUL"]),
    "NUL in a workdir": (BASE + b'workdir = "/data/a\\u0000b"\n', ["`sites.home.workdir`", "NUL"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_bad_config_names_the_file_the_key_and_the_fix(split_home: Path, capsys, case: str) -> None:
    text, words = BAD_CONFIGS[case]
    path = split_home / "work" / "jupyter_split.toml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    for word in [str(path), *words]:
        assert word in str(err.value), str(err.value)
    core.reset()
    assert cli.main(["sites"]) == 2
    err_text = capsys.readouterr().err
    assert str(path) in err_text and "Traceback" not in err_text


def test_good_values_still_load(split_home: Path) -> None:
    path = split_home / "work" / "jupyter_split.toml"
    path.write_bytes(BASE + "# café\nport = 65535\nconnect_timeout = 0.5\nkeepalive_interval = 0\n"
                     'storage = "s3://bucket/x"\n'.encode())
    site = load_config(path).sites["home"]
    assert (site.port, site.connect_timeout, site.keepalive_interval, site.storage) == (65535, 0.5, 0, "s3://bucket/x")


# -- 4. CLI options ------------------------------------------------------------------------

BAD_OPTIONS = [
    (["push", "src", "home:x", "--concurrency", "0"], "--concurrency", "from 1 to 256"),
    (["pull", "home:x", "--concurrency", "-3"], "--concurrency", "from 1 to 256"),
    (["push", "src", "home:x", "--concurrency", "lots"], "--concurrency", "not a whole number"),
    (["runs", "--limit", "0"], "--limit", "1 or more"),
    (["wandb", "--limit", "-5"], "--limit", "1 or more"),
    (["logs", "some-run", "--after", "-1"], "--after", "0 or more"),
    (["logs", "some-run", "--rank", "-1"], "--rank", "0 or more"),
    (["run", "home", "cell.py", "--timeout", "-1"], "--timeout", "above 0"),
    (["run", "home", "cell.py", "--timeout", "nan"], "--timeout", "above 0"),
]


@pytest.mark.parametrize("argv, option, words", BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_number_out_of_range_is_a_usage_error(split_home: Path, capsys, argv: list[str], option: str, words: str) -> None:
    (split_home / "work" / "src").mkdir()
    (split_home / "work" / "src" / "a.txt").write_text("a")
    (split_home / "work" / "cell.py").write_text("print('ran')\n")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and words in err and "Traceback" not in err, err
    assert not (split_home / "data" / "storage" / "home" / "x").exists()


@pytest.mark.parametrize("line, option", [("home --gpus 0", "--gpus"), ("home --nodes -1", "--nodes"),
                                          ("home --timeout 0", "--timeout")])
def test_cell_magic_numbers_out_of_range_are_usage_errors(line: str, option: str) -> None:
    from IPython.core.error import UsageError
    from jupyter_split.magics import SplitMagics, parse

    with pytest.raises(UsageError, match=f"argument {option}: "):
        parse(SplitMagics.on, line)


@pytest.mark.parametrize("option, value", [("concurrency", 0), ("retries", -1), ("chunk_size", 0), ("backoff", -1.0)])
def test_python_api_numbers_out_of_range_are_refused_before_a_copy(split_home: Path, option: str, value: float) -> None:
    # retries=-1 ran no send round and published a manifest of a file that was never sent.
    src = split_home / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    dest = split_home / "dest"
    with pytest.raises(ValueError, match=rf"sync.copy: {option}={value!r} is out of range: give .* or more"):
        sync.copy(str(src), str(dest), progress=False, **{option: value})
    assert not dest.exists()


def test_an_environment_the_runner_cannot_set_fails_the_cell_and_the_session_lives(kernel) -> None:
    kernel.ok("%%on home\nx = 41")
    # past every check at entry (the config is changed in place): the runner itself must hold
    kernel.ok("from jupyter_split import core\nsplit = core.get_split()\n"
              "real = split._site_env\nsplit._site_env = lambda site, run: {**real(site, run), 'BAD': 'a' + chr(0)}")
    outputs, reply = kernel.run("%%on home\nprint(x)")
    shown = tracebacks(outputs) + stream_text(outputs) + json.dumps(reply)
    assert "environment cannot be set on site 'home'" in shown and "embedded null byte" in shown, shown
    kernel.ok("split._site_env = real")
    printed = "".join(o.get("text", "") for o in kernel.ok("%%on home\nprint(x + 1)"))
    assert "42" in printed, "the session lost its namespace after a cell whose environment could not be set"
