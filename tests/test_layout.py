"""The package's layout holds: no import cycles, and the transport below the executors.

Every import counts, also those inside functions (a lazy import hides a cycle; it does not
remove it), except those under `if TYPE_CHECKING:`, which never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import jupyter_split

PACKAGE = Path(jupyter_split.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node except what sits under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (the most specific module each import names)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        targets.add(f"{base}.{alias.name}")
                    elif base in modules:
                        targets.add(base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in modules)
        targets.discard(name)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a cycle's members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["jupyter_split.core.split"], "the walk found the package's imports"
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_ssh_transport_does_not_depend_on_the_executors():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("jupyter_split.ssh.") and module != "jupyter_split.ssh.bootstrap":
            assert not {t for t in targets if t.startswith("jupyter_split.executors")}, module


def test_every_error_derives_from_the_one_root():
    from jupyter_split.errors import SplitError

    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and node.name != "SplitError":
                module = __import__(name, fromlist=["_"])
                assert issubclass(getattr(module, node.name), SplitError), f"{name}.{node.name}"


def test_the_public_import_paths_keep_working(tmp_path):
    import subprocess
    import sys

    from jupyter_split import ckpt, core, policy, sync, tracking

    assert callable(ckpt.save) and callable(ckpt.load) and callable(ckpt.consolidate)
    assert callable(sync.copy) and callable(sync.push) and callable(sync.pull) and callable(sync.latest)
    assert callable(policy.declassify) and callable(policy.check_objects)
    assert callable(tracking.runner_env) and callable(core.get_split)
    probe = subprocess.run([sys.executable, "-m", "jupyter_split.runner", "--probe"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert '"jupyter_split"' in probe.stdout and '"python"' in probe.stdout


def test_the_faces_do_not_import_each_other():
    faces = {"jupyter_split.magics", "jupyter_split.cli", "jupyter_split.server"}
    graph = import_graph()
    for module, targets in graph.items():
        face = next((f for f in faces if module == f or module.startswith(f + ".")), None)
        if face:
            others = {t for t in targets for f in faces - {face} if t == f or t.startswith(f + ".")}
            assert not others, f"{module} imports {others}"


def test_the_client_never_imports_the_site_side():
    # the runner's modules run on the site; the client and the site share protocol.py instead
    client = ("jupyter_split.core", "jupyter_split.executors", "jupyter_split.commands", "jupyter_split.server",
              "jupyter_split.magics", "jupyter_split.cli", "jupyter_split.ssh")
    for module, targets in import_graph().items():
        if module.startswith(client):
            assert not {t for t in targets if t.startswith("jupyter_split.runner")}, module
