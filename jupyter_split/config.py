"""Sites, the experiment and the residency policy, read from `jupyter_split.toml`.

Lookup order: `$JUPYTER_SPLIT_CONFIG`, then `jupyter_split.toml` in the working
directory and its parents, then `~/.config/jupyter_split/config.toml`, then the
built-in two-site default (both sites on this machine).
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .accelerators.settings import Accelerators, Lease
from .residency.settings import Policy, ScanPolicy, ScanSite  # noqa: F401  (ScanSite: the config's names)
from .errors import SplitError, explain_invalid, nul_key
from .paths import data_dir
from .runs.segments import SEGMENT_BYTES

FILE_NAME = "jupyter_split.toml"
ACCELERATORS = ("auto", "cpu", "cuda", "npu", "mlu", "musa", "dcu", "xpu", "mps")


class ConfigError(SplitError, ValueError):
    """A config that cannot be used; the message names the file, the key and the fix."""

    http_status, http_reason = 400, "invalid jupyter_split config"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WandbSite(_Strict):
    """`[sites.NAME].wandb`: how runs on the site log to W&B, and to which server.

    `jurisdiction` is where that server keeps its data (unset: US for W&B's cloud, else the
    site's own); labelled checkpoints and home runs' metrics go to it only as the policy allows.
    """

    mode: Literal["online", "offline", "disabled"] = "offline"
    base_url: str | None = None
    entity: str | None = None
    project: str | None = None
    # where the W&B server keeps its data; default: US for W&B's cloud, else the site's own
    jurisdiction: str | None = None

    @field_validator("jurisdiction")
    @classmethod
    def _iso_country(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError(f"{value!r} is not an ISO 3166 two-letter country code, e.g. \"CN\" or \"US\"")
        return value.upper() if value else value


class SlurmOptions(_Strict):
    """`[sites.NAME].slurm`: the sbatch options of a slurm site.

    `signal` asks for a warning before the job is stopped, so the runner can call the cell's
    `on_preempt` hooks; `requeue` lets the job come back and go on.
    """

    partition: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: list[str] = Field(default_factory=list)
    signal: str = "USR2@90"
    requeue: bool = True


class RayOptions(_Strict):
    """`[sites.NAME].ray`: the Ray job server of a ray site, and what each job asks of it."""

    address: str = "http://127.0.0.1:8265"
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, float] = Field(default_factory=dict)


class SiteConfig(_Strict):
    """`[sites.NAME]`: one place that runs cells: how to reach it, its storage and its jurisdiction.

    `jurisdiction` is required: the residency guard decides every copy by it. `name` is
    filled in from the table's key when the whole config is validated.
    """

    name: str = ""
    executor: Literal["local", "ssh", "slurm", "ray"] = "local"
    host: str | None = None
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    proxy_jump: str | None = None
    connect_timeout: float = 15.0
    keepalive_interval: float = 15.0
    python: str | None = None
    workdir: str | None = None
    storage: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    jurisdiction: str
    accelerator: str = "auto"
    visible_devices: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    wandb: WandbSite = Field(default_factory=WandbSite)
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)
    ray: RayOptions = Field(default_factory=RayOptions)
    lease: Lease = Field(default_factory=Lease)

    @field_validator("jurisdiction")
    @classmethod
    def _iso_country(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError(f"{value!r} is not an ISO 3166 two-letter country code, e.g. \"CN\" or \"SG\"")
        return value.upper()

    @field_validator("port")
    @classmethod
    def _tcp_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"{value} is not a TCP port: give a whole number from 1 to 65535 (SSH listens on 22)")
        return value

    @field_validator("connect_timeout")
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{value} is not a timeout: give seconds above 0, e.g. 15")
        return value

    @field_validator("keepalive_interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{value} is not an interval: give seconds, e.g. 15, or 0 for no keepalives")
        return value

    @field_validator("env")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        # A name the OS would not take made every run on the site a ValueError traceback.
        for key in value:  # a NUL in a value is refused with every other string of the file (parse_config)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment variable name: use letters, digits and '_', "
                                 "not starting with a digit")
        return value

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, value: str) -> str:
        if value not in ACCELERATORS:
            raise ValueError(f"{value!r} is not one of {', '.join(ACCELERATORS)}")
        return value

    @model_validator(mode="after")
    def _remote_needs_host(self) -> "SiteConfig":
        if self.executor == "ssh" and not self.host:
            raise ValueError("an ssh site needs `host` (and usually `user` and `identity_file`)")
        return self

    @property
    def is_remote(self) -> bool:
        """Whether the site is reached over the network (it has a `host`)."""
        return self.host is not None


#: the extra of jupyter_split that brings each storage backend it supports
STORAGE_EXTRAS = {"s3": "s3", "s3a": "s3", "ssh": "ssh", "sftp": "ssh", "oss": "oss"}


def storage_protocol_problem(url: str) -> str | None:
    """Why fsspec can never open `url` (a protocol no backend registers), or None.

    A backend that is known but not installed here is no problem at load time (a site's
    config travels to every site, and only some use each storage); opening it says which
    extra to install.
    """
    import fsspec  # registers the backends of installed plugin packages
    from fsspec.core import split_protocol
    from fsspec.registry import known_implementations, registry

    chain = split_protocol(url)[0]
    for protocol in (chain.split("::") if chain else ()):
        if protocol not in known_implementations and protocol not in registry:
            extras = ", ".join(sorted({f"jupyter_split[{extra}] for {p}://" for p, extra in STORAGE_EXTRAS.items()
                                       if p == extra}))
            return (f"{url!r}: no fsspec backend (fsspec {fsspec.__version__}) knows the protocol {protocol!r}. "
                    "Fix the URL (e.g. s3://bucket/path, ssh://host/path, file:///path), or install the package "
                    f"that provides {protocol}:// ({extras})")
    return None


class Experiment(_Strict):
    """`[experiment]`: the run id prefix, the home site and the site `%%remote_gpu` uses by default."""

    name: str = "split"
    home: str = "home"
    default_remote: str = "abroad"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"{value!r} must be letters, digits, '.', '_' or '-' (it prefixes run ids)")
        return value


class Notebook(_Strict):
    """`[notebook]`: what a cell keeps in the notebook. `scrollback`: the lines of a cell's text
    output it shows, like a terminal's scrollback (the first half as printed, then the last lines
    in one display headed by how many were left out); the run's log keeps them all."""

    scrollback: int = Field(default=5000, ge=10, le=1_000_000)


class Runs(_Strict):
    """`[runs]`: what a run keeps on its site. `log_segment_bytes`: the event log goes on in a new
    file (a segment) once the one being written holds this many bytes, so no file of a run grows
    without bound; readers cross segments as if they were one log."""

    log_segment_bytes: int = Field(default=SEGMENT_BYTES, ge=4096, le=64 << 30)


#: the most SSH connections a copy opens to an SFTP server unless `[sync] max_connections` says:
#: enough for a border link that holds each flow to a twelfth of its width
MAX_CONNECTIONS = 16


class SyncOptions(_Strict):
    """`[sync]`: how checkpoints cross a link. `max_connections`: the most SSH connections a copy
    opens to an SFTP server; it starts at 8 and doubles while each connection still adds its share,
    up to this (`sync.width`)."""

    max_connections: int = Field(default=MAX_CONNECTIONS, ge=1, le=64)


class Config(_Strict):
    """The whole validated config: the experiment, the sites by name and the policy.

    `source` names where it came from, for error messages. Validation fills each site's
    `name` and checks that the experiment and the scan rules name known sites.
    """

    experiment: Experiment = Field(default_factory=Experiment)
    sites: dict[str, SiteConfig]
    notebook: Notebook = Field(default_factory=Notebook)
    runs: Runs = Field(default_factory=Runs)
    sync: SyncOptions = Field(default_factory=SyncOptions)
    accelerators: Accelerators = Field(default_factory=Accelerators)
    policy: Policy = Field(default_factory=Policy)
    source: str = "built-in default"

    @model_validator(mode="after")
    def _names_resolve(self) -> "Config":
        for name, site in self.sites.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
                raise ValueError(f"site name {name!r} must be letters, digits, '_' or '-'")
            site.name = name
        for name in self.policy.scan.sites:
            if name not in self.sites:
                raise ValueError(f"policy.scan.sites.{name} names no site; sites are {sorted(self.sites)}")
        for key in ("home", "default_remote"):
            value = getattr(self.experiment, key)
            if value not in self.sites:
                raise ValueError(f"experiment.{key} = {value!r} names no site; sites are {sorted(self.sites)}")
        return self

    @property
    def home(self) -> SiteConfig:
        """The home site: the one whose jurisdiction resident data belongs to."""
        return self.sites[self.experiment.home]

    def site(self, name: str | None) -> SiteConfig:
        """The named site, or the default remote one; an unknown name lists the known ones."""
        name = name or self.experiment.default_remote
        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(sorted(self.sites))
            raise ConfigError(
                f"unknown site {name!r} (config: {self.source}). Known sites: {known}. "
                f"Add [sites.{name}] to the config or pick one of those."
            ) from None

    def audit_log_path(self) -> Path:
        """Where the guard appends its decisions: `policy.audit_log`, else `audit.jsonl` in the data directory."""
        return Path(self.policy.audit_log).expanduser() if self.policy.audit_log else data_dir() / "audit.jsonl"


def default_config() -> Config:
    """Two sites on this machine: `abroad` (SG) and `home` (CN), both run by the local executor."""
    root = data_dir()
    return Config(
        experiment=Experiment(name="split-demo", home="home", default_remote="abroad"),
        sites={
            "abroad": SiteConfig(jurisdiction="SG", storage=(root / "storage" / "abroad").as_uri()),
            "home": SiteConfig(jurisdiction="CN", storage=(root / "storage" / "home").as_uri()),
        },
        policy=Policy(resident=[(root / "pii").as_uri() + "/**"]),
    )


def find_config_file(start: Path | None = None) -> Path | None:
    """The config file to use, in the module's lookup order, or None for the built-in default.

    Raises ConfigError when `$JUPYTER_SPLIT_CONFIG` is set but names no file, rather than
    silently falling back to another config.
    """
    explicit = os.environ.get("JUPYTER_SPLIT_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"$JUPYTER_SPLIT_CONFIG points at {path}, which is not a file. Fix the path or unset it.")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            return candidate
    user = Path("~/.config/jupyter_split/config.toml").expanduser()
    return user if user.is_file() else None


_active: Config | None = None


def activate(config: Config | None) -> None:
    """Make `config` what `load_config()` returns in this process (a runner gets it from its client)."""
    global _active
    _active = config


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the config; with no file anywhere, the built-in default."""
    if path is None and _active is not None:
        return _active
    file = Path(path) if path else find_config_file()
    if file is None:
        return default_config()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{file}: not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at byte offset {exc.start} "
                          f"(line {line}) cannot be decoded. TOML files are UTF-8: "
                          "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or remove that byte.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}. Fix the syntax at that line.") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc.strerror}.") from None
    return parse_config(raw, str(file))


def parse_config(raw: dict[str, Any], source: str) -> Config:
    """Validate an already parsed TOML table into a Config; `source` is named in every error.

    Raises ConfigError for a NUL anywhere, no sites, a bad key or value, or a storage URL no
    fsspec backend can ever open.
    """
    nul = nul_key(raw)
    if nul:  # TOML's \u0000: in a path, a URL or an environment variable it ends the string, or the runner
        raise ConfigError(f"{source}: invalid config\n  `{nul}`: has a NUL character (\\u0000), which no name, path "
                          "or environment variable can hold: remove it")
    if "sites" not in raw or not raw["sites"]:
        raise ConfigError(f"{source}: no [sites.NAME] table. Add at least one site, e.g. [sites.home] with jurisdiction = \"CN\".")
    try:
        config = Config(**raw, source=source)
    except ValidationError as exc:
        raise ConfigError(explain_invalid(exc, source)) from None
    # Here, not in the model: a runner validates the config it is sent with its site's fsspec,
    # which may know fewer protocols than this machine's.
    problems = [f"  `sites.{site.name}.storage`: {problem}" for site in config.sites.values()
                if site.storage and (problem := storage_protocol_problem(site.storage))]
    if problems:
        raise ConfigError("\n".join([f"{source}: invalid config", *problems]))
    return config
