"""The notebook kernel is a tracked process: what it read of resident data may not leave by `--in`.

Each escape runs in a fresh real kernel (`%load_ext jupyter_split` first, as a notebook
does): the kernel reads the resident file some way, then sends a variable abroad with
`%%on sg --in`. Every attempt must be refused before a runner starts, leave no byte at
the destination, and write a `refused` line to the audit log. The SG site is a local
runner with local storage (the `home` policy fixture).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jupyter_split import core, policy
from tests.fixtures.core import Kernel, text, tracebacks

pytestmark = pytest.mark.slow

SECRET = "Zhang San,110101199003077777,13800000000\n"


@pytest.fixture
def pii(home: Path) -> Path:
    path = home / "pii" / "people.csv"
    path.write_text("name,id,phone\n" + SECRET)
    return path


def _sent_abroad(root: Path) -> list[Path]:
    """Files at the SG site (its runs and its storage) that hold any of the resident bytes."""
    found = []
    for top in (root / "data" / "sites" / "sg", root / "sg-store"):
        for path in top.rglob("*") if top.exists() else ():
            if path.is_file() and (b"13800000000" in path.read_bytes() or path.name == "in.pkl"):
                found.append(path)
    return found


def assert_refused(kernel: Kernel, root: Path, name: str = "d", why: str = "this notebook kernel") -> str:
    """`%%on sg --in NAME` is refused before anything starts, with the way out; returns the message."""
    before = len(policy.audit_entries(decision="refused"))
    runs, abroad = len(core.Split().list_runs(site="sg")), _sent_abroad(root)
    outputs, reply = kernel.run(f"%%on sg --in {name}\nprint('arrived abroad', len({name}))")
    shown = tracebacks(outputs) + text(outputs)
    assert reply["status"] == "error", shown
    assert "arrived abroad" not in shown
    assert f"variable {name!r}" in shown and "label CN" in shown and why in shown, shown
    assert f"%split declassify {name}" in shown and "restart the kernel" in shown, shown
    assert len(core.Split().list_runs(site="sg")) == runs  # no runner started, nothing pickled for it
    assert _sent_abroad(root) == abroad
    refusals = policy.audit_entries(decision="refused")[before:]
    assert [(r["item"], r["to_site"], r["kind"]) for r in refusals] == [(name, "sg", "variable")]
    assert SECRET.strip() not in str(refusals)
    return shown


def _hard_link(root: Path, pii: Path) -> str:
    os.link(pii, root / "work" / "notes.csv")
    return "d = open('notes.csv').read()"


def _symlink(root: Path, pii: Path) -> str:
    (root / "work" / "shortcut").symlink_to(pii)
    return "d = open('shortcut').read()"


def _symlinked_folder(root: Path, pii: Path) -> str:
    (root / "work" / "door").symlink_to(pii.parent)
    return "d = open('door/people.csv').read()"


def _shell_copy(root: Path, pii: Path) -> str:
    subprocess.run(["cp", str(pii), str(root / "work" / "innocent.txt")], check=True)  # not by the kernel
    return "d = open('innocent.txt').read()"


def _npy(root: Path, pii: Path) -> str:
    import numpy as np

    np.save(pii.parent / "ids.npy", np.array([110101199003077777, 13800000000]))
    return f"import numpy as np\nd = np.load({str(pii.parent / 'ids.npy')!r})"


def _plain(code: str):
    return lambda root, pii: code.replace("PII", repr(str(pii)))


ESCAPES = {
    "open-read": _plain("d = open(PII).read()"),
    "pathlib-read_text": _plain("import pathlib\nd = pathlib.Path(PII).read_text()"),
    "pathlib-relative-dotdot": _plain("import pathlib\nd = pathlib.Path('../sg-store/../pii/./people.csv').read_bytes()"),
    "pandas-read_csv": _plain("import pandas as pd\nd = pd.read_csv(PII)"),
    "pandas-read_csv-memory_map": _plain("import pandas as pd\nd = pd.read_csv(PII, engine='c', memory_map=True)"),
    "numpy-loadtxt": _plain("import numpy as np\nd = np.loadtxt(PII, dtype=str, delimiter=',', skiprows=1)"),
    "numpy-fromfile": _plain("import numpy as np\nd = np.fromfile(PII, dtype='u1').tobytes()"),
    "numpy-load": _npy,
    "proc-self-root": _plain("d = open('/proc/self/root' + PII).read()"),
    "os-open-read": _plain("import os\nfd = os.open(PII, os.O_RDONLY)\nd = os.read(fd, 4096)\nos.close(fd)"),
    "os-open-dir_fd": _plain("import os\nparent = os.open(os.path.dirname(os.path.dirname(PII)), os.O_RDONLY)\n"
                             "fd = os.open('pii/people.csv', os.O_RDONLY, dir_fd=parent)\nd = os.read(fd, 4096)"),
    "mmap": _plain("import mmap, os\nfd = os.open(PII, os.O_RDONLY)\nd = bytes(mmap.mmap(fd, 0, prot=mmap.PROT_READ))"),
    "symlink-to-file": _symlink,
    "symlink-to-folder": _symlinked_folder,
    "hard-link": _hard_link,
    "shell-copy-under-new-name": _shell_copy,
    "shutil-copy-then-read-copy": _plain("import shutil\nshutil.copy(PII, 'mine.csv')\nd = open('mine.csv').read()"),
    "subprocess-cat": _plain("import subprocess\nd = subprocess.run(['cat', PII], capture_output=True).stdout"),
    "subprocess-shell-string": _plain("import subprocess\n"
                                      "d = subprocess.check_output('cat ../pii/people.csv | head -5', shell=True)"),
    "ipython-bang-getoutput": _plain("d = !cat ../pii/people.csv"),
    "bash-cell-magic": _plain("%%bash --out d\ncd ..\ncat pii/people.csv"),
    "script-cell-magic": _plain("%%script sh --out d\nhead -3 ../pii/people.csv"),
    "os-popen": _plain("import os\nd = os.popen('cat ../pii/*.csv').read()"),
    "multiprocessing-fork-worker": _plain(
        "import multiprocessing as mp\ndef grab(p):\n    return open(p).read()\n"
        "with mp.get_context('fork').Pool(2) as pool:\n    d = pool.map(grab, [PII])"),
    "os-fork-child": _plain(
        "import os\nr, w = os.pipe()\nif os.fork() == 0:\n    os.write(w, open(PII, 'rb').read())\n    os._exit(0)\n"
        "os.close(w)\nd = os.read(r, 4096)"),
}


@pytest.mark.parametrize("escape", list(ESCAPES))
def test_a_kernel_that_read_resident_data_cannot_send_it_abroad(home, pii, kernel, escape):
    if escape.startswith("pandas"):
        pytest.importorskip("pandas")
    kernel.ok(ESCAPES[escape](home, pii))
    assert "13800000000" in text(kernel.ok("print(d)"))  # the kernel holds the resident data
    assert_refused(kernel, home)


def test_a_bind_mount_of_the_resident_folder_is_the_resident_folder(home, pii, kernel):
    door = home / "work" / "mounted"
    door.mkdir()
    if subprocess.run(["mount", "--bind", str(pii.parent), str(door)], capture_output=True).returncode:
        pytest.skip("bind mounts need CAP_SYS_ADMIN here")
    try:
        kernel.ok("d = open('mounted/people.csv').read()")
        assert "is the resident file" in assert_refused(kernel, home)
    finally:
        subprocess.run(["umount", str(door)], check=True)


def test_every_variable_of_a_tainted_kernel_is_refused_and_home_still_takes_them(home, pii, kernel):
    kernel.ok(f"rows = open({str(pii)!r}).read().splitlines()\nsummary = {{'n': len(rows)}}\nunrelated = [1, 2, 3]")
    assert_refused(kernel, home, "unrelated")  # the kernel cannot tell what its variables hold
    assert_refused(kernel, home, "summary")
    assert "arrived at home 2" in text(kernel.ok("%%on home --in summary\nprint('arrived at home', summary['n'])"))


def test_the_taint_shows_in_split_policy_and_says_how_to_clear_it(home, pii, kernel):
    assert "this kernel: not labelled" in text(kernel.ok("%split policy"))
    kernel.ok(f"d = open({str(pii)!r}).read()")
    shown = text(kernel.ok("%split policy"))
    assert "this kernel: CN (this notebook kernel read" in shown and "people.csv" in shown
    assert "until the kernel restarts" in shown and "%split declassify" in shown


def test_declassifying_a_string_variable_approves_it_by_name_and_stores_no_content(home, pii, kernel):
    # a resident file with nothing the content scanner would find: the taint alone refuses it
    notes = pii.parent / "minutes.txt"
    notes.write_text("quarterly review minutes, confidential\n")
    kernel.ok(f"d = open({str(notes)!r}).read()\nother = d.upper()\ncount = len(d)")
    assert_refused(kernel, home)
    shown = text(kernel.ok('%split declassify d count --reason "DPO approval 7"'))
    assert "declassified variable 'd'" in shown and "declassified variable 'count'" in shown
    assert "arrived abroad" in text(kernel.ok("%%on sg --in d,count\nprint('arrived abroad', len(d), count)"))
    assert_refused(kernel, home, "other")  # the kernel stays tainted: only `d` and `count` were approved
    for record in [*policy.declassifications(), *policy.audit_entries()]:
        assert "minutes, confidential" not in str(record), record  # the variable's value is never written down


def test_a_restart_clears_the_kernels_taint(home, pii, kernel):
    kernel.ok(f"d = open({str(pii)!r}).read()")
    assert_refused(kernel, home)
    kernel.restart()
    kernel.ok("%load_ext jupyter_split")
    kernel.ok("d = 'weights summary'")
    assert "arrived abroad" in text(kernel.ok("%%on sg --in d\nprint('arrived abroad', len(d))"))


def test_reads_before_the_extension_was_loaded_count_as_unknown(home, pii, split_home):
    k = Kernel(split_home / "work")
    try:
        k.ok(f"d = open({str(pii)!r}).read()")
        k.ok("%load_ext jupyter_split")
        shown = assert_refused(k, home, why="ran in this notebook kernel before jupyter_split tracked its reads")
        assert "load the extension in its first cell" in shown
    finally:
        k.close()


def test_an_untainted_kernel_still_sends_in_variables_abroad(home, pii, kernel):
    """The positive: a kernel that read only its own files sends `--in` abroad, audited as allowed."""
    kernel.ok("import os\nx = [1, 2, 3]\nos.listdir('.')\nopen('notes.txt', 'w').write('mine')\n"
              "y = open('notes.txt').read()")
    shown = text(kernel.ok("%%on sg --in x,y\nprint('arrived abroad', sum(x), y)"))
    assert "arrived abroad 6 mine" in shown
    assert [r["decision"] for r in policy.audit_entries()] == ["allowed", "allowed"]
    assert "this kernel: not labelled" in text(kernel.ok("%split policy"))


def test_writing_into_the_resident_folder_is_not_a_read(home, pii, kernel):
    kernel.ok(f"open({str(pii.parent / 'new.csv')!r}, 'w').write('x')\nx = 1")
    assert "arrived abroad" in text(kernel.ok("%%on sg --in x\nprint('arrived abroad', x)"))


def test_a_tainted_kernel_pushes_nothing_abroad_either(home, pii, kernel):
    """As for a run: a tainted process's copies abroad are refused too (it may have written the file)."""
    (home / "work" / "out" / "summary.txt").write_text("derived\n")
    kernel.ok(f"d = open({str(pii)!r}).read()")
    outputs, reply = kernel.run("%split push out/summary.txt sg:summary.txt")
    shown = tracebacks(outputs) + text(outputs) + str(reply)
    assert reply["status"] == "error" and "this notebook kernel read" in shown, shown
    assert [p for p in (home / "sg-store").rglob("*") if p.is_file()] == []
    assert [(r["kind"], r["to_site"]) for r in policy.audit_entries(decision="refused")] == [("copy", "sg")]


def test_the_guards_own_look_at_resident_files_does_not_taint_the_kernel(home, pii, kernel):
    """A push walks the resident folders and hashes their files (the fingerprint index): that
    is the guard reading, not the notebook, so the kernel stays clean and the push goes."""
    (home / "work" / "out" / "summary.txt").write_text("derived\n")
    kernel.ok("%split push out/summary.txt sg:summary.txt\nx = 1")
    assert (home / "sg-store" / "summary.txt" / "summary.txt").read_text() == "derived\n"
    assert "this kernel: not labelled" in text(kernel.ok("%split policy"))
    assert "arrived abroad 1" in text(kernel.ok("%%on sg --in x\nprint('arrived abroad', x)"))


def test_a_home_run_fed_by_a_tainted_kernel_is_tainted_and_cannot_push_it_abroad(home, pii, kernel):
    """Laundering through home: `%%on home --in d` is allowed, and the run that holds `d` now
    carries the kernel's label, so its own push abroad of what it wrote is refused."""
    notes = pii.parent / "minutes.txt"
    notes.write_text("quarterly review minutes, confidential\n")  # nothing the content scanner flags
    kernel.ok(f"d = open({str(notes)!r}).read()")
    outputs, reply = kernel.run(
        "%%on home --in d\nfrom jupyter_split import sync\nopen('relay.txt', 'w').write(d.upper())  # no copy: new bytes\n"
        "sync.push('relay.txt', 'sg:relay')")
    shown = tracebacks(outputs) + text(outputs) + str(reply)
    assert reply["status"] == "error" and "Residency: refused to copy" in shown, shown
    assert "minutes.txt" in shown  # the label says where the kernel's data came from
    assert [p for p in (home / "sg-store").rglob("*") if p.is_file()] == []
    assert [r["kind"] for r in policy.audit_entries(decision="refused")] == ["copy"]


def test_a_declassified_variable_abroad_does_not_carry_the_kernels_label_there(home, pii, kernel):
    """The approval covers the run abroad that holds it: that run may save to its own storage."""
    notes = pii.parent / "minutes.txt"
    notes.write_text("quarterly review minutes, confidential\n")
    kernel.ok(f"d = open({str(notes)!r}).read()")
    kernel.ok('%split declassify d --reason "DPO approval 9"')
    kernel.ok("%%on sg --in d\nfrom jupyter_split import sync\nopen('kept.txt', 'w').write(d.upper())\n"
              "sync.push('kept.txt', 'sg:kept')")
    assert (home / "sg-store" / "kept" / "kept.txt").read_text() == "QUARTERLY REVIEW MINUTES, CONFIDENTIAL\n"


def test_a_cell_built_from_a_tainted_kernels_data_is_not_sent_abroad(home, pii, kernel):
    """The cell's own code goes abroad too: from a tainted kernel only code the user typed in the
    cell being run may go (code made at run time could hold what the kernel read)."""
    notes = pii.parent / "minutes.txt"
    notes.write_text("quarterly review minutes, confidential\n")
    kernel.ok(f"d = open({str(notes)!r}).read()")
    for built in ("get_ipython().run_cell_magic('on', 'sg', 'x = ' + repr(d) + '\\nprint(len(x))')",
                  "get_ipython().run_cell_magic('on', 'sg --name ' + d.split()[0], 'print(1)')",
                  "from jupyter_split import core\ncore.get_split().execute("
                  "'print(' + repr(d) + ')', core.CellOptions(site='sg'), {}, print)"):
        outputs, reply = kernel.run(built)
        shown = tracebacks(outputs) + text(outputs) + str(reply)
        assert reply["status"] == "error" and "refused to send cell" in shown, shown
        assert "this notebook kernel read" in shown and "minutes" not in shown.split("It carries")[0]
    assert core.Split().list_runs(site="sg") == []
    assert [r["kind"] for r in policy.audit_entries(decision="refused")] == ["cell"] * 3
    assert "typed here" in text(kernel.ok("%%on sg\nprint('typed here')"))  # the user's own code still goes
    assert "at home" in text(kernel.ok("get_ipython().run_cell_magic('on', 'home', 'print(\"at \" + \"home\")')"))
