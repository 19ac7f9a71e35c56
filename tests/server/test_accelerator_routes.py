"""GET /jupyter-split/accelerators and /jupyter-split/lease through a real jupyter_server, with the
vendor tool stand-ins on PATH: readings reused within the interval, the query validated."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.accelerators.conftest import stand_in_path
from tests.fixtures.server import fetch_json
from tests.fixtures.core import write_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

CONFIG = """\
[experiment]
name = "t"
home = "home"
default_remote = "abroad"

[accelerators]
interval = 60

[sites.home]
jurisdiction = "CN"

[sites.abroad]
jurisdiction = "SG"
lease = { gpu_hours = 10, price_per_gpu_hour = 3, currency = "EUR" }
"""


@pytest.fixture
def jp_server_config(split_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("PATH", stand_in_path())  # the local sites' probes run here, with this PATH
    write_config(split_home, CONFIG)
    return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}}}


async def test_accelerators_answers_every_site_and_reuses_a_fresh_reading(jp_fetch) -> None:
    first = await fetch_json(jp_fetch, "accelerators")
    assert first["interval"] == 60 and {s["site"] for s in first["sites"]} == {"home", "abroad"}
    node = first["sites"][0]["nodes"][0]
    assert {c["vendor"] for c in node["cards"]} == {"nvidia", "huawei", "cambricon", "mthreads", "hygon"}
    assert node["memory"]["total"] > 0
    again = await fetch_json(jp_fetch, "accelerators", params={"site": "home"})
    home = next(s for s in first["sites"] if s["site"] == "home")
    assert [s["site"] for s in again["sites"]] == ["home"] and again["sites"][0]["time"] == home["time"]


@pytest.mark.parametrize(("site", "status"), [("../etc", 400), ("x" * 300, 400), ("nowhere", 400)])
async def test_a_bad_or_unknown_site_is_a_400(jp_fetch, site: str, status: int) -> None:
    for route in ("accelerators", "lease"):
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("jupyter-split", route, params={"site": site})
        assert err.value.code == status


async def test_lease_answers_each_site_as_configured_beside_its_use(jp_fetch) -> None:
    answer = await fetch_json(jp_fetch, "lease")
    abroad = next(s for s in answer["sites"] if s["site"] == "abroad")
    assert abroad["lease"]["gpu_hours"] == 10 and abroad["currency"] == "EUR" and abroad["left"] == 10
    assert answer["experiment"]["name"] == "t"
