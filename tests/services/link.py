"""A link between two sites in front of one server: the model of `link_model.py` as a process.

    python tests/services/link.py --to PORT --profile border [--scale 0.1] [--flow-rate MB/S] ...

prints the port it listens on, on the first line of stdout; then `cut` or `stall SECONDS` on its
stdin act at once. From Python: `start_link(PORT, profile="border", scale=0.1)`, or
`link_model.LinkModel` in an event loop of one's own.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

if __package__:
    from .link_model import MB, PROFILES, Event, LinkModel, Profile, link_profile, schedule
else:  # run as a script: its folder is on sys.path (the package's __init__ would load every service)
    from link_model import MB, PROFILES, Event, LinkModel, Profile, link_profile, schedule

__all__ = ["MB", "PROFILES", "Event", "Link", "LinkModel", "Profile", "link_profile", "schedule", "start_link"]


@dataclass
class Link:
    port: int
    process: subprocess.Popen
    profile: Profile
    started: float  # time.monotonic() when it listened; its schedule counts from here

    def schedule(self, horizon: float) -> list[Event]:
        return schedule(self.profile, horizon)

    def cut(self) -> None:
        self._say("cut")

    def stall(self, seconds: float) -> None:
        self._say(f"stall {seconds}")

    def _say(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.process.stdin.close()
        self.process.stdout.close()


def start_link(target_port: int, mb_per_s: float | None = None, rtt_ms: float | None = None, *,
               profile: str | Profile = "loopback", scale: float = 1.0, **overrides) -> Link:
    """A relay process to `target_port` on 127.0.0.1 with `profile` scaled by `scale`, then `overrides`
    (Profile's fields, or `rate` for both aggregate caps). `mb_per_s` (1e6 bytes, each way) and
    `rtt_ms` set the aggregate caps and the delay."""
    if mb_per_s is not None:
        overrides["rate"] = mb_per_s * MB
    if rtt_ms is not None:
        overrides["delay"] = rtt_ms / 2000
    link = link_profile(profile, scale, **overrides)
    process = subprocess.Popen([sys.executable, __file__, "--to", str(target_port), "--spec", json.dumps(asdict(link))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(process.stdout.readline())
    return Link(port=port, process=process, profile=link, started=time.monotonic())


def _size(text: str) -> int:
    units = {"k": 1e3, "m": 1e6, "ki": 1 << 10, "mi": 1 << 20}
    digits = text.rstrip("kKmMiIbB")
    unit = text[len(digits):].lower().removesuffix("b")
    return round(float(digits) * units.get(unit, 1))


def _profile_from(args: argparse.Namespace) -> Profile:
    if args.spec:
        return Profile(**json.loads(args.spec))
    overrides: dict = {}
    for name, key, unit in (("rate", "rate", MB), ("mb_per_s", "rate", MB), ("rate_up", "rate_up", MB),
                            ("rate_down", "rate_down", MB), ("flow_rate", "flow_rate", MB),
                            ("delay", "delay", 1e-3), ("rtt_ms", "delay", 0.5e-3), ("jitter", "jitter", 1e-3),
                            ("stall_every", "stall_every", 1), ("stall_for", "stall_for", 1),
                            ("cut_every", "cut_every", 1), ("seed", "seed", 1)):
        if getattr(args, name) is not None:
            overrides[key] = getattr(args, name) * unit
    if args.window is not None:
        overrides["window"] = _size(args.window)
    return link_profile(args.profile, args.scale, **overrides)


def _listen_to_stdin(loop: asyncio.AbstractEventLoop, link: LinkModel) -> None:
    def listen() -> None:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["cut"]:
                loop.call_soon_threadsafe(link.cut)
            elif words[:1] == ["stall"] and len(words) == 2:
                loop.call_soon_threadsafe(link.stall, float(words[1]))
    threading.Thread(target=listen, daemon=True).start()


async def _serve(target: int, link: Profile, sock: socket.socket, started: float) -> None:
    model = LinkModel(target, link)
    await model.start(sock, started)
    _listen_to_stdin(asyncio.get_running_loop(), model)
    parent = os.getppid()
    while os.getppid() == parent:  # a benchmark that dies leaves no relay behind
        await asyncio.sleep(0.5)


def parse(argv: list[str]) -> tuple[int, Profile]:
    """The command line's server port and link."""
    parser = argparse.ArgumentParser(prog="link.py", description=__doc__.splitlines()[0], epilog="profiles: " + "; ".join(
        f"{name}: {link.describe()}" for name, link in PROFILES.items()))
    parser.add_argument("--to", type=int, required=True, metavar="PORT", help="the server's port on 127.0.0.1")
    parser.add_argument("--profile", choices=list(PROFILES), default="loopback")
    parser.add_argument("--scale", type=float, default=1.0, metavar="K",
                        help="rates and window times K, before the flags below")
    parser.add_argument("--rate", type=float, metavar="MB/S", help="aggregate cap each way (1e6 bytes a second)")
    parser.add_argument("--mb-per-s", type=float, help=argparse.SUPPRESS)  # the old name of --rate
    parser.add_argument("--rate-up", type=float, metavar="MB/S", help="aggregate cap toward the server")
    parser.add_argument("--rate-down", type=float, metavar="MB/S", help="aggregate cap back from the server")
    parser.add_argument("--flow-rate", type=float, metavar="MB/S", help="cap of each connection each way")
    parser.add_argument("--delay", type=float, metavar="MS", help="one-way delay")
    parser.add_argument("--rtt-ms", type=float, metavar="MS", help="round trip (half each way)")
    parser.add_argument("--jitter", type=float, metavar="MS", help="each way's delay varies by up to this either side")
    parser.add_argument("--window", metavar="BYTES", help="bytes in flight per connection each way: 4MiB, 256k, 65536")
    parser.add_argument("--stall-every", type=float, metavar="S", help="mean seconds between stalls")
    parser.add_argument("--stall-for", type=float, metavar="S", help="seconds each stall lasts")
    parser.add_argument("--cut-every", type=float, metavar="S", help="mean seconds between cuts")
    parser.add_argument("--seed", type=int, help="the seed of the stalls, cuts and jitter")
    parser.add_argument("--spec", help=argparse.SUPPRESS)  # a whole Profile as JSON, from start_link
    args = parser.parse_args(argv)
    return args.to, _profile_from(args)


def main(argv: list[str]) -> int:
    target, link = parse(argv)
    sock = socket.create_server(("127.0.0.1", 0))
    started = time.monotonic()
    print(sock.getsockname()[1], flush=True)
    asyncio.run(_serve(target, link, sock, started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
