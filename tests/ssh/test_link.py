"""Cells on an ssh site reached through the link model (tests/services/link_model.py): interactive
traffic on a connection of its own, never queued behind bulk transfers; a cut mid-cell on
`border-flaky`, after which the output goes on by itself, nothing lost or doubled.

The site's sshd is on this machine, so the runner's clock is ours: a line that carries the
time it was printed tells how long it took to be shown.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_split import aio, core
from jupyter_split.config import parse_config
from jupyter_split.ssh.connection import BULK_BYTES
from tests.services.link import start_link

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # rates and an interrupt's delay through the link model

# A border link scaled in time: a flow's cap and its window (4 MiB: a second of that flow, what one
# connection's live output would queue behind) as border's, the round trip a third of it.
BULK = 16_000_000  # each way: 4 s at the link's 4 MB/s per flow
FLOW = 4e6
RTT = 0.05


def split_over(sshd, link, tmp_path: Path, **overrides: Any) -> core.Split:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{link.port} {sshd.host_public_key}\n")
    site = sshd.site(port=link.port, known_hosts=str(known), **overrides)
    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": site, "home": {"jurisdiction": "CN"}}}
    return core.Split(parse_config(raw, "test"))


def installed(sshd) -> None:
    """jupyter_split on the site, installed straight (not through the link) so a test times only itself."""
    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": sshd.site(), "home": {"jurisdiction": "CN"}}}
    ex = core.Split(parse_config(raw, "test")).executor("sg")
    aio.run(ex.ready())
    aio.run(ex.close())


def flows(ex) -> list[tuple[Any, Any]]:
    """(this end, the far end) of each of the site's open SSH connections."""
    return [(link.conn.get_extra_info("sockname"), link.conn.get_extra_info("peername"))
            for link in (ex.connection.interactive, ex.connection.bulk) if link.connected]


@pytest.fixture
def bordered(sshd):
    """The test sshd behind a border link scaled in time: RTT 50 ms, 4 MB/s for one flow, 50 MB/s for all."""
    installed(sshd)
    link = start_link(sshd.port, profile="border", flow_rate=FLOW, delay=RTT / 2, jitter=0.0)
    yield link
    link.stop()


STAMPS = "import time\nprint('started', flush=True)\nfor _ in range(1200):\n    print('stamp', repr(time.time()), flush=True)\n    time.sleep(0.05)"


def test_live_output_and_interrupts_do_not_queue_behind_bulk_transfers(sshd, split_home, tmp_path, bordered):
    split = split_over(sshd, bordered, tmp_path)
    ex = split.executor("sg")
    down = Path(sshd.workdir) / "bulk" / "down.bin"
    down.parent.mkdir(exist_ok=True)
    down.write_bytes(os.urandom(BULK))
    up = os.urandom(BULK)
    up_path = str(down.parent / "up.bin")
    seen: dict[str, Any] = {"delays": [], "transfers": None, "interrupt": None, "error": None}

    async def interrupt() -> None:
        seen["interrupt"] = time.monotonic()
        await ex.signal(split.index.session("sg"), "INT")

    def deliver(event: dict[str, Any]) -> None:
        now, transfers = time.monotonic(), seen["transfers"]
        text = event.get("text", "")
        if text.startswith("started") and transfers is None:
            # both directions at once: up (what an interrupt goes on) and down (what live output comes on)
            seen["transfers"] = (now, asyncio.gather(ex.write_file(up_path, up), ex.read_file(str(down))))
        elif text.startswith("stamp") and transfers is not None and not transfers[1].done():
            seen["delays"].append(time.time() - float(text.split()[1]))
            seen["flows"] = flows(ex)
            if seen["interrupt"] is None and now - transfers[0] > 1.0:  # a quarter of the way
                asyncio.ensure_future(interrupt())
        elif event["type"] == "error":
            seen["error"] = (now, event["ename"], transfers is not None and transfers[1].done())

    try:
        outcome = split.execute(STAMPS, core.CellOptions(site="sg"), {}, deliver)
        started, transfers = seen["transfers"]
        uploaded, downloaded = aio.run(_finished(transfers))
        elapsed = time.monotonic() - started
    finally:
        aio.run(ex.close())
    assert outcome.state != "succeeded" and seen["error"] is not None and seen["error"][1] == "KeyboardInterrupt"
    ended, _, transfers_done = seen["error"]
    delays, interrupt = seen["delays"], ended - seen["interrupt"]
    print(f"\nbulk 2 x {BULK / 1e6:g} MB in {elapsed:.1f} s; live output delay median "
          f"{sorted(delays)[len(delays) // 2] * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms; "
          f"interrupt round trip {interrupt * 1000:.0f} ms (RTT {RTT * 1000:g} ms)")
    assert not transfers_done, "the interrupt was not measured while the transfers ran"
    assert elapsed > 0.7 * BULK / FLOW, f"the transfers took {elapsed:.1f} s: the link did not hold them back"
    # On one connection, live output waits behind the megabytes in flight (the link's window and the
    # sockets' buffers: 1.5 s at 4 MB/s) and each step of an interrupt behind as much going up.
    assert len(delays) >= 20 and max(delays) < 1.0, f"live output was held back: {sorted(delays)[-5:]}"
    assert interrupt < 3.0, f"the interrupt took {interrupt:.1f} s"
    (here_a, far_a), (here_b, far_b) = seen["flows"]
    assert far_a == far_b and far_a[1] == bordered.port and here_a != here_b, "not two flows through the link"
    assert uploaded is None and Path(up_path).read_bytes() == up
    assert downloaded == down.read_bytes()


def test_large_in_and_out_variables_take_the_bulk_connection(sshd, split_home, tmp_path, bordered):
    split = split_over(sshd, bordered, tmp_path)
    ex = split.executor("sg")
    namespace: dict[str, Any] = {"small": b"s" * 1000, "big": bytes(range(256)) * (3 * BULK_BYTES // 256)}
    try:
        opts = core.CellOptions(site="sg", inputs=["small"], outputs=["echo"])
        outcome = split.execute("echo = small * 2", opts, namespace, lambda e: None)
        assert outcome.state == "succeeded" and namespace["echo"] == b"s" * 2000
        assert len(aio.run(_flows(ex))) == 1, "small variables opened the bulk connection"
        # each way on its own: the --out answer's size moves it; then the --in payload's
        opts = core.CellOptions(site="sg", outputs=["back"])
        outcome = split.execute("back = bytes(range(256)) * (3 << 12)", opts, namespace, lambda e: None)
        assert outcome.state == "succeeded" and namespace["back"] == namespace["big"]
        assert len({here for here, _ in aio.run(_flows(ex))}) == 2, "a large --out did not take the bulk connection"
        aio.run(_close_bulk(ex))
        opts = core.CellOptions(site="sg", inputs=["big"], outputs=["size"])
        outcome = split.execute("size = len(big)", opts, namespace, lambda e: None)
        assert outcome.state == "succeeded" and namespace["size"] == len(namespace["big"])
        assert len({here for here, _ in aio.run(_flows(ex))}) == 2, "a large --in did not take the bulk connection"
    finally:
        aio.run(ex.close())


def test_a_cut_mid_cell_on_border_flaky_and_the_output_goes_on_by_itself(sshd, split_home, tmp_path):
    installed(sshd)
    # border-flaky's own stalls and cuts come 20 s and 30 s in at the earliest; this one is cut by hand
    link = start_link(sshd.port, profile="border-flaky", seed=3)
    keepalive = 3.0
    split = split_over(sshd, link, tmp_path, keepalive_interval=keepalive)
    ex = split.executor("sg")
    lines = 120
    cell = f"import time\nfor i in range({lines}):\n    print('line', i, flush=True)\n    time.sleep(0.05)"
    events: list[tuple[float, dict[str, Any]]] = []
    cut: dict[str, Any] = {}
    before = aio.run(_bulk_flow(ex))

    def deliver(event: dict[str, Any]) -> None:
        events.append((time.monotonic(), event))
        if event["type"] == "stream" and event["text"].startswith("line 10") and not cut:
            cut.update(at=time.monotonic(), flows=flows(ex))
            link.cut()

    try:
        outcome = split.execute(cell, core.CellOptions(site="sg", fresh=True), {}, deliver)
        after = aio.run(_bulk_flow(ex))  # the bulk connection was cut too: it reconnects on its next use
        now = aio.run(_flows(ex))
    finally:
        aio.run(ex.close())
        link.stop()
    assert outcome.state == "succeeded", outcome
    shown = "".join(e["text"] for _, e in events if e["type"] == "stream").splitlines()
    assert shown == [f"line {i}" for i in range(lines)]
    seqs = [e["seq"] for _, e in events]
    assert seqs == sorted(set(seqs)), "a record was doubled or reordered"
    assert not set(cut["flows"]) & set(now) and before != after, "the cut did not end both connections"
    # lines are printed every 50 ms: the longest wait for the next one after the cut is how long the output stopped
    times = [at for at, e in events if e["type"] == "stream" and at >= cut["at"]]
    stopped = max(b - a for a, b in zip([cut["at"], *times], times))
    assert stopped < 2 * keepalive, f"the output stopped for {stopped:.1f} s after the cut"
    print(f"\noutput stopped {stopped * 1000:.0f} ms after the cut (keepalive {keepalive:g} s)")


async def _bulk_flow(ex) -> Any:
    """Write and read back 2 MiB (both on the bulk connection); this end of the bulk connection's flow."""
    data = os.urandom(2 * BULK_BYTES)
    path = ex.path("bulk-check.bin")
    await ex.write_file(path, data)
    assert await ex.read_file(path) == data
    return ex.connection.bulk.conn.get_extra_info("sockname")


async def _flows(ex) -> list[tuple[Any, Any]]:
    return flows(ex)  # the site's connections belong to the loop they were made on


async def _close_bulk(ex) -> None:
    await ex.connection.bulk.close()


async def _finished(transfers: asyncio.Future) -> Any:
    return await asyncio.wait_for(transfers, 120)


WIDE = 48 << 20  # a variable of three times the wide path's threshold


def test_big_in_and_out_variables_go_over_several_connections_of_their_own(sshd, split_home, tmp_path, bordered):
    """A variable above WIDE_BYTES does not ride the one bulk flow: it goes as a file of the run directory
    over the wide path's connections, both ways, and arrives whole; a small one still goes over the socket."""
    from jupyter_split.ssh.wide import WIDE_BYTES

    split = split_over(sshd, bordered, tmp_path)
    ex = split.executor("sg")
    namespace: dict[str, Any] = {"big": os.urandom(WIDE), "small": b"s" * 1000}
    assert WIDE > 2 * WIDE_BYTES
    try:
        opts = core.CellOptions(site="sg", inputs=["big", "small"], outputs=["back"])
        outcome = split.execute("back = big[::-1] + small", opts, namespace, lambda e: None)
        assert outcome.state == "succeeded", outcome
        assert namespace["back"] == namespace["big"][::-1] + namespace["small"]
        run_dir = Path(split.index.get(outcome.run_id).run_dir)
        assert (run_dir / "in.pkl").stat().st_size > WIDE and (run_dir / "out.pkl").stat().st_size > WIDE
        wide, bulk = aio.run(_wide_and_bulk(ex))
        assert wide >= 4, f"the payloads went on {wide} connection(s)"
        assert not bulk, "a big payload took the bulk connection"
        # a small one goes over the session's socket as before: no file in between
        opts = core.CellOptions(site="sg", inputs=["small"], outputs=["echo"])
        outcome = split.execute("echo = small * 2", opts, namespace, lambda e: None)
        assert outcome.state == "succeeded" and namespace["echo"] == b"s" * 2000
        assert not (Path(split.index.get(outcome.run_id).run_dir) / "in.pkl").exists()
    finally:
        aio.run(ex.close())


async def _wide_and_bulk(ex) -> tuple[int, bool]:
    """How many of the wide path's connections are open, and whether the bulk one is."""
    return sum(1 for link in ex.wide._links if link.connected), ex.connection.bulk.connected


def test_a_wide_payload_whose_connection_drops_goes_on_over_the_others(sshd, split_home, tmp_path, bordered):
    split = split_over(sshd, bordered, tmp_path)
    ex = split.executor("sg")
    data = os.urandom(WIDE)
    target = Path(sshd.workdir) / "wide" / "in.pkl"

    async def write_and_drop() -> int:
        wide = ex.wide
        moved: list[int] = []
        task = asyncio.ensure_future(wide.write(str(target), [memoryview(data)], len(data), moved.append))
        while sum(moved) < WIDE // 4:
            await asyncio.sleep(0.01)
            assert not task.done(), task.exception()
        dropped = next(link for link in wide._links if link.connected)
        dropped.conn.abort()
        await task
        return sum(moved)

    try:
        moved = aio.run(write_and_drop())
        assert target.read_bytes() == data
        assert moved >= WIDE  # the pieces in flight on the dropped connection went again
        assert not list(target.parent.glob("*.part-*")), "a temporary file was left behind"
    finally:
        aio.run(ex.close())
