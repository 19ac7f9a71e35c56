"""The border's content scanner: throughput, recall and false positives, on one core.

    python -m benchmarks policy_scan [--quick] [--text-mb N] [--random-mb N] [--weights-mb N]
A text corpus (prose, dates, prices, decimals, hex digests, order numbers, and near misses:
IDs with a wrong check digit, numbers inside longer runs) with a personal value planted every
10 KB, in the ways people write them; random bytes; real safetensors weights. The peer is the
same scanner on Python's `re` (what a pure-Python scanner gets), and a plain read of the file.
`run(args)` returns the markdown rows (for `python -m benchmarks policy` to reuse); `main` prints them.
"""
from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from jupyter_split.residency import matcher as matcher_module
from jupyter_split.residency.matcher import compile_pattern
from jupyter_split.residency.scan import Scanner
from jupyter_split.residency.scan_kinds import ADDRESSES, NUMBERS, id_check_char, luhn_ok

EVERY = 10_000  # a planted value per this many bytes
SEED = 20261206
WORDS = ("the of and to in data model train loss step epoch batch user account order invoice "
         "shipped total price review 北京 上海 客户 订单 数据 模型 ").split()


def _id(rng: random.Random, regions: tuple[str, ...] = ("11", "31", "44", "51", "62")) -> str:
    first = f"{rng.choice(regions)}0105{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}" \
            f"{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return first + id_check_char(first)


def _card(rng: random.Random) -> str:
    body = rng.choice(["622202", "621700", "411111", "545454"]) + "".join(rng.choices("0123456789", k=9))
    return body + next(d for d in "0123456789" if luhn_ok(body + d))


def _planted(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(8)
    if kind == 0:
        return "prc_id", _id(rng)
    if kind == 1:
        value = _id(rng)
        return "prc_id", f"{value[:6]} {value[6:14]} {value[14:]}"
    if kind == 2:
        return "cn_mobile", f"1{rng.randint(3, 9)}{rng.randint(0, 999_999_999):09d}"
    if kind == 3:
        number = f"1{rng.randint(3, 9)}{rng.randint(0, 999_999_999):09d}"
        return "cn_mobile", f"+86 {number[:3]}-{number[3:7]}-{number[7:]}"
    if kind == 4:
        return "bank_card", _card(rng)
    if kind == 5:
        value = _card(rng)
        return "bank_card", " ".join(value[i:i + 4] for i in range(0, 16, 4))
    return "email", f"{rng.choice(['li.wei', 'zhang_san', 'wang-fang88', 'chen'])}{rng.randint(1, 9999)}@" \
                    f"{rng.choice(['example.com', 'mail.corp.cn', 'qq.com', 'university.edu.cn'])}"


def _filler(rng: random.Random) -> str:
    # what text around personal data looks like, with the near misses a scanner must not flag
    near = rng.randrange(600)  # about one near miss per 40 KB that the checks (not the pattern) must turn away
    if near == 0:
        wrong = _id(rng, ("11", "31", "44"))  # (a Gansu 62... with a wrong check digit can be a UnionPay card)
        return f"ref {wrong[:17]}{'1' if wrong[17] != '1' else '2'}"  # a wrong check digit
    if near <= 30:
        return f"{rng.random():.17f}"
    if near <= 60:
        return rng.randbytes(32).hex()
    if near <= 90:
        return f"order {rng.randint(10**19, 10**22)} at {rng.randint(1_700_000_000_000, 1_800_000_000_000)}"
    return (f"{rng.choice(WORDS)} {rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.choice(WORDS)} ¥{rng.randint(1, 99999)}.{rng.randint(0, 99):02d}")


def make_corpus(path: Path, megabytes: int) -> list[tuple[str, int]]:
    """Write the text corpus; return (kind, offset) of every planted value."""
    rng = random.Random(SEED)
    pool = " ".join(_filler(rng) if i % 6 == 0 else rng.choice(WORDS) for i in range(400_000)).encode()
    planted: list[tuple[str, int]] = []
    offset = 0
    with open(path, "wb") as out:
        while offset < megabytes * 1_000_000:
            kind, value = _planted(rng)
            start = rng.randrange(0, len(pool) - EVERY)
            segment = pool[start:start + EVERY - 64]
            segment = segment[segment.index(b" "):segment.rindex(b" ") + 1]  # whole words: no number cut in two
            cut = segment.rfind(b" ", 0, rng.randrange(64, len(segment)))
            piece = segment[:cut] + b" " + value.encode() + b" " + segment[cut + 1:] + b"\n"
            planted.append((kind, offset + cut + 1))
            out.write(piece)
            offset += len(piece)
    return planted


def timed_scan(scanner: Scanner, path: Path) -> tuple[float, list]:
    """CPU seconds of one scan of `path` (the process is pinned to one core: CPU time is that core's
    work, which other load on a shared machine inflates less than wall time), and what it found."""
    start = time.process_time()
    with open(path, "rb") as handle:
        result = scanner.scan_file(handle, path.name, path.stat().st_size)
    return time.process_time() - start, result.findings + result.unscannable


def matcher_only(path: Path) -> float:
    """CPU seconds the scanner's RE2 passes take over `path` with every candidate thrown away."""
    data = path.read_bytes()
    start = time.process_time()
    for pattern in (ADDRESSES, NUMBERS):
        matcher, pos = compile_pattern(pattern), 0
        while (spans := matcher.search(data, pos)) is not None:
            pos = spans[0][1]
    return time.process_time() - start


def make_weights(path: Path, megabytes: int) -> None:
    """Real weights: a transformer's initialised parameters in fp32, bf16, fp16 and int8, saved by safetensors."""
    torch.manual_seed(SEED)
    tensors, total, layer = {}, 0, 0
    while total < megabytes * 1_000_000:
        block = torch.nn.TransformerEncoderLayer(512, 8, 2048)
        for name, param in block.state_dict().items():
            dtype = (torch.float32, torch.bfloat16, torch.float16, torch.float32)[layer % 4]
            value = param.detach().to(dtype)
            if layer % 4 == 3 and value.dim() == 2:  # a quantised layer: int8 weights
                value = (value / value.abs().max() * 127).round().to(torch.int8)
            tensors[f"layers.{layer}.{name}"] = value.contiguous()
            total += value.numel() * value.element_size()
        layer += 1
    save_file(tensors, path, metadata={"format": "pt", "trained_by": "bench"})


def run(args: list[str]) -> list[str]:
    """The benchmark's markdown rows (one core: the process is pinned to its first CPU)."""
    quick = "--quick" in args

    def number(flag: str, default: int) -> int:
        return int(args[args.index(flag) + 1]) if flag in args else default

    text_mb = number("--text-mb", 20 if quick else 200)
    random_mb = number("--random-mb", 64 if quick else 1000)
    weights_mb = number("--weights-mb", 50 if quick else 400)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    scanner = Scanner(max_findings=10**9)
    rows = []
    with tempfile.TemporaryDirectory(prefix="jsb-scan-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        planted = make_corpus(corpus, text_mb)
        size = corpus.stat().st_size
        with open(corpus, "rb") as handle:  # warm the page cache: the scan, not the disk, is measured
            read_start = time.process_time()
            while handle.read(4 << 20):
                pass
            read_s = time.process_time() - read_start
        seconds, findings = min((timed_scan(scanner, corpus) for _ in range(3)), key=lambda pair: pair[0])
        found = {(f.kind, f.offset) for f in findings}
        recall = sum((kind, offset) in found for kind, offset in planted) / len(planted)
        extra = len(found - set(planted))
        rows.append(f"| text corpus {size / 1e6:.0f} MB, {len(planted)} planted, MB/s of one core's CPU time | "
                    f"{size / seconds / 1e6:.0f} | >= 300 | recall {recall:.2%}, {extra} false positives |")
        rows.append(f"| same file, plain read, MB/s | {size / read_s / 1e6:.0f} | | the I/O floor |")
        rows.append(f"| same file, the matcher's passes alone (no check in Python), MB/s | "
                    f"{size / matcher_only(corpus) / 1e6:.0f} | | RE2's ceiling here |")
        slice_path = Path(tmp) / "slice.txt"
        slice_path.write_bytes(corpus.read_bytes()[: 4_000_000])
        matcher_module._re2, engine = None, matcher_module._re2  # the matcher falls back to Python's `re`
        try:
            slow = Scanner(max_findings=10**9)
        finally:
            matcher_module._re2 = engine
        slow_s, _ = timed_scan(slow, slice_path)
        rows.append(f"| same scanner on Python `re` (4 MB slice), MB/s | {4 / slow_s:.1f} | | the peer: "
                    f"{size / seconds / 1e6 / (4 / slow_s):.0f}x slower than RE2 |")
        corpus.unlink()
        noise = Path(tmp) / "noise.bin"
        rng = random.Random(SEED)
        with open(noise, "wb") as out:
            for _ in range(random_mb // 50):
                out.write(rng.randbytes(50_000_000))
        seconds, findings = timed_scan(scanner, noise)
        rows.append(f"| random bytes {noise.stat().st_size / 1e6:.0f} MB, MB/s, findings | "
                    f"{noise.stat().st_size / seconds / 1e6:.0f} | 0 findings | {len(findings)} findings |")
        noise.unlink()
        weights = Path(tmp) / "model.safetensors"
        make_weights(weights, weights_mb)
        seconds, findings = timed_scan(scanner, weights)
        megabytes = weights.stat().st_size / 1e6
        rows.append(f"| safetensors weights {megabytes:.0f} MB (payload skipped), MB/s, findings | "
                    f"{megabytes / seconds:.0f} | 0 findings | {len(findings)} findings |")
        payload = scanner.scan_file(_Raw(weights), weights.name)  # as if it were not recognised
        rows.append(f"| the same weights scanned byte for byte, findings | {len(payload.findings)} | 0 | "
                    "every tensor's bytes read as text |")
    rows.append(f"| (load average while it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs) | | | |")
    return rows


class _Raw:
    """A file read with its first byte hidden, so it is not recognised as safetensors."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "rb")
        self.handle.read(1)

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        if not data:
            self.handle.close()
        return data


def main(argv: list[str]) -> int:
    rows = run(argv)
    print("| measure | value | goal | notes |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0
