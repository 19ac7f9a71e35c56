"""Resident globs against disguised paths and URLs: `..`, symlinks, percent-encoding, case, slashes."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from jupyter_split.config import ConfigError, parse_config
from jupyter_split.residency.locations import compile_glob, compile_globs, covers, matching_glob, redact, site_for_url


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("residency")
    (root / "data" / "pii" / "sub").mkdir(parents=True)
    (root / "data" / "pii" / "sub" / "people.csv").write_text("name\n")
    (root / "data" / "pii-other").mkdir()
    (root / "data" / "models").mkdir()
    (root / "alias").symlink_to(root / "data" / "pii")  # a back door into the resident folder
    (root / "data" / "models" / "door").symlink_to(root / "data" / "pii" / "sub")
    return root


def globs_for(root: Path):
    return compile_globs([f"file://{root}/data/pii/**", "oss://corp-pii/**", "s3://Shared/patients/*.parquet"])


def labelled(url: str, root: Path, contains: bool = False) -> bool:
    return matching_glob(url, globs_for(root), contains=contains) is not None


@pytest.mark.parametrize("disguise", [
    "{r}/data/pii/sub/people.csv",
    "{r}/data/pii",
    "{r}/data/pii/",
    "{r}/data/pii//sub///people.csv",
    "{r}/data/models/../pii/sub/people.csv",
    "{r}/data/./pii/./sub/people.csv",
    "{r}/alias/sub/people.csv",
    "{r}/data/models/door/people.csv",
    "{r}/data/models/door/../sub/people.csv",  # `..` after a link is resolved physically
    "{r}/DATA/PII/Sub/People.CSV",
    "file://{r}/data/pii/sub/people.csv",
    "file:{r}/data/pii/sub/people.csv",
    "file://localhost{r}/data/pii/sub/people.csv",
    "local://{r}/data/pii/sub/people.csv",
    "file://{r}/data/%70ii/sub/people.csv",
    "file://{r}/data/pii%2Fsub%2Fpeople.csv",
    "file://{r}/data/x/%2e%2e/pii/sub",
    "file://{r}/data/x/%252e%252e/pii/sub",
    "{r}/data/pii%2Fsub",
    "file://{r}/data/pii/sub/people.csv?version=2",
    "file://{r}/data/pii/sub/people.csv#frag",
    "simplecache::file://{r}/data/pii/sub/people.csv",
    "oss://corp-pii/a/b",
    "OSS://CORP-PII/a",
    "oss://user:pw@corp-pii:443/a",
    "oss://corp-pii",
    "oss://corp-pii/x/../y",
    "oss://other/../corp-pii/y",
    "s3://shared/patients/2024.parquet",
    "s3a://shared/patients/2024.PARQUET",
    "s3://shared/patients/%32024.parquet",
])
def test_disguised_resident_locations_are_labelled(tree, disguise):
    assert labelled(disguise.format(r=tree), tree)


@pytest.mark.parametrize("elsewhere", [
    "{r}/data/pii-other/people.csv",
    "{r}/data/models/weights.safetensors",
    "{r}/data/piix",
    "file://{r}/data/models/x",
    "oss://corp-pii-public/a",
    "s3://corp-pii/a",
    "s3://shared/patients/2024.csv",
    "s3://shared/patients/sub/2024.parquet",
])
def test_other_locations_are_not_labelled(tree, elsewhere):
    assert not labelled(elsewhere.format(r=tree), tree)


def test_a_folder_that_holds_a_resident_location_counts_when_asked(tree):
    assert labelled(f"{tree}/data", tree, contains=True)
    assert labelled("/", tree, contains=True)
    assert labelled("oss://corp-pii", tree, contains=True)
    assert not labelled(f"{tree}/data", tree, contains=False)
    assert not labelled(f"{tree}/data/models", tree, contains=True)


def test_a_resident_folder_reached_through_a_symlink_in_the_glob_itself(tree):
    glob = compile_glob(f"{tree}/alias/**")  # the policy names the link; files are opened by their real path
    assert matching_glob(f"{tree}/data/pii/sub/people.csv", [glob], contains=False)


def test_relative_and_empty_globs_are_config_errors_that_say_the_fix():
    with pytest.raises(ConfigError, match="relative path.*absolute path or URL"):
        compile_glob("data/pii/**")
    with pytest.raises(ConfigError, match="names no path"):
        compile_glob("file:///")
    assert matching_glob("/anything/x.pii.csv", [compile_glob("**/*.pii.csv")], contains=False)


def test_site_for_url_takes_the_longest_storage_prefix_then_the_ssh_host():
    config = parse_config({
        "experiment": {"home": "home", "default_remote": "sg"},
        "sites": {
            "home": {"jurisdiction": "CN", "storage": "file:///srv/ckpt"},
            "nested": {"jurisdiction": "DE", "storage": "file:///srv/ckpt/de"},
            "sg": {"jurisdiction": "SG", "storage": "s3://sg-bucket/ckpt", "executor": "ssh", "host": "login.sg.example"},
        },
    }, "test")
    assert site_for_url("/srv/ckpt/a", config).name == "home"
    assert site_for_url("file:///srv/ckpt/DE/x/", config).name == "nested"
    assert site_for_url("/srv/ckpt/de/../a", config).name == "home"
    assert site_for_url("s3://SG-Bucket/ckpt/step1", config).name == "sg"
    assert site_for_url("sftp://alice@login.sg.example:22/scratch/x", config).name == "sg"
    assert site_for_url("s3://elsewhere/x", config) is None


def test_covers_is_literal_and_ancestor_or_self(tree):
    assert covers(f"{tree}/data/pii", f"{tree}/alias/sub/people.csv")
    assert not covers(f"{tree}/data/pii/sub/people.csv", f"{tree}/data/pii")


def test_redact_hides_passwords_in_urls():
    assert redact("sftp://bob:s3cret@host/x") == "sftp://bob:***@host/x"
    assert "s3cret" not in redact("s3://KEY:s3cret@bucket/x")
    assert redact("/plain/path") == "/plain/path"


# ---- fuzzing: any disguise of a resident path is labelled, and disguises of others are not

segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", ".."))


def _percent(text: str, data: st.DataObject) -> str:
    out = []
    for ch in text:
        roll = data.draw(st.integers(0, 9))
        if ch != "/" and roll == 0:
            out.append(quote(ch, safe=""))
            if ch.isalnum():
                out[-1] = "%{:02X}".format(ord(ch))
        elif ch != "/" and roll == 1:
            out.append("%25{:02X}".format(ord(ch)))  # double encoding
        elif ch == "/" and roll == 2:
            out.append("%2F")
        else:
            out.append(ch)
    return "".join(out)


def disguise(path: str, root: Path, data: st.DataObject, recase: bool = True) -> str:
    """`path` written another way. With `recase=False` the case stays: this filesystem is
    case-sensitive, so a re-cased symlink name is no path at all here."""
    parts = path.strip("/").split("/")
    noisy: list[str] = []
    for part in parts:
        if data.draw(st.integers(0, 5)) == 0:
            noisy += [data.draw(segment), ".."]  # a detour that comes back
        if data.draw(st.integers(0, 6)) == 0:
            noisy.append(".")
        case = data.draw(st.sampled_from(["same", "upper", "swap"] if recase else ["same"]))
        noisy.append(part.upper() if case == "upper" else part.swapcase() if case == "swap" else part)
    sep = data.draw(st.sampled_from(["/", "//"]))
    text = "/" + sep.join(noisy) + data.draw(st.sampled_from(["", "/", "//"]))
    form = data.draw(st.sampled_from(["path", "file3", "file1", "localhost", "encoded"]))
    if form == "path":
        return text
    if form == "encoded":
        return "file://" + _percent(text, data)
    return {"file3": "file://", "file1": "file:", "localhost": "file://localhost"}[form] + text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tail=st.lists(segment, max_size=3), via_link=st.booleans())
def test_fuzz_resident_paths_cannot_slip_past(tree, data, tail, via_link):
    head = f"{tree}/alias" if via_link else f"{tree}/data/pii"
    path = "/".join([head, *tail])
    url = disguise(path, tree, data, recase=not via_link)
    assert labelled(url, tree), url


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tail=st.lists(segment, max_size=3), sibling=st.sampled_from(["pii-other", "models", "piii"]))
def test_fuzz_disguised_other_paths_stay_unlabelled(tree, data, tail, sibling):
    path = "/".join([f"{tree}/data/{sibling}", *[t for t in tail if t != "door"]])
    url = disguise(path, tree, data)
    assert not labelled(url, tree), url


@settings(max_examples=300, deadline=None)
@given(data=st.data(), tail=st.lists(segment, max_size=3))
def test_fuzz_resident_object_store_urls(data, tail):
    globs = compile_globs(["oss://corp-pii/records/**"])
    key = "/".join(["records", *tail])
    bucket = data.draw(st.sampled_from(["corp-pii", "CORP-PII", "Corp-Pii"]))
    user = data.draw(st.sampled_from(["", "ak:sk@", "ak@"]))
    port = data.draw(st.sampled_from(["", ":443"]))
    detour = data.draw(st.sampled_from(["", "x/../", "./"]))
    key = _percent(detour + key, data) + data.draw(st.sampled_from(["", "/", "?versionId=3"]))
    url = f"oss://{user}{bucket}{port}/{key}"
    assert matching_glob(url, globs, contains=False), url


def test_symlink_loop_and_nul_bytes_do_not_crash(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    globs = compile_globs([f"{tmp_path}/pii/**"])
    assert matching_glob(f"{tmp_path}/loop/x", globs, contains=False) is None
    assert matching_glob(f"{tmp_path}/pii/a\x00b", globs, contains=False) is not None
    assert os.path.islink(tmp_path / "loop")


def test_a_relative_resident_entry_fails_at_config_load_naming_the_key():
    sites = {"home": {"jurisdiction": "CN"}, "abroad": {"jurisdiction": "SG"}}
    with pytest.raises(ConfigError, match=r"(?s)site.toml.*`policy.resident`.*'pii/\*\*' is a relative path"):
        parse_config({"sites": sites, "policy": {"resident": ["pii/**"]}}, "site.toml")
