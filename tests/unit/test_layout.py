"""The package layout (issue 12), checked from the source.

Statically (`ast`, every .py file of each package): which package may import which. Dynamically:
importing every module of every package starts no program, opens no connection and spawns no
subprocess (import-time work belongs in a function that runs when it is needed).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "bridge", "executor", "cod", "devstack")
PRODUCTION = ("protocol", "bridge", "executor", "cod")

# (importer, imported, also inside functions?): what a package never imports. A lazy import (inside
# a function) counts unless the third field says it is allowed.
FORBIDDEN: list[tuple[str, str, bool]] = [
    ("bridge", "executor", True),
    ("executor", "bridge", True),
    *[("protocol", other, True) for other in ("bridge", "executor", "cod", "devstack")],
    *[(pkg, other, True) for pkg in ("bridge", "executor") for other in ("cod", "devstack")],
    # `cod devstack` and `cod demo` import devstack inside the command's function, never at load.
    ("cod", "devstack", False),
]


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    target: str  # the absolute module name
    lazy: bool  # inside a function

    def __str__(self) -> str:
        where = " (inside a function)" if self.lazy else ""
        return f"{self.file.relative_to(ROOT)}:{self.line}: imports {self.target}{where}"


def _module_package(path: Path) -> list[str]:
    """The package a module's relative imports are resolved against."""
    return list(path.relative_to(ROOT).with_suffix("").parts[:-1])


def imports_of(path: Path, source: str | None = None) -> Iterator[Import]:
    """Every import in `path` (or in `source`, read as if it were that file), also
    `importlib.import_module("…")` and `__import__("…")` with a literal name; relative ones made
    absolute."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    package = _module_package(path)

    def walk(node: ast.AST, lazy: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(path, child.lineno, alias.name, lazy)
            elif isinstance(child, ast.ImportFrom):
                base = package[: len(package) - (child.level - 1)] if child.level else []
                if child.module:
                    yield Import(path, child.lineno, ".".join([*base, child.module]), lazy)
                else:  # `from . import x`, `from .. import x`: x is a module
                    for alias in child.names:
                        yield Import(path, child.lineno, ".".join([*base, alias.name]), lazy)
            elif isinstance(child, ast.Call) and _dynamic_import(child) is not None:
                yield Import(path, child.lineno, str(_dynamic_import(child)), lazy)
            yield from walk(child, inner)

    yield from walk(tree, False)


def _dynamic_import(call: ast.Call) -> str | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(target: str) -> str:
    return target.split(".", 1)[0]


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_has_sources(package: str) -> None:
    assert _sources(package), f"no .py files under {package}/: the layout checks would pass vacuously"


@pytest.mark.parametrize(("importer", "imported", "lazy_too"), FORBIDDEN,
                         ids=[f"{a}-not-{b}" for a, b, _ in FORBIDDEN])
def test_forbidden_imports(importer: str, imported: str, lazy_too: bool) -> None:
    bad = [
        str(imp)
        for path in _sources(importer)
        for imp in imports_of(path)
        if _top(imp.target) == imported and (lazy_too or not imp.lazy)
    ]
    scope = "" if lazy_too else " at module level"
    assert not bad, f"{importer} must not import {imported}{scope}:\n" + "\n".join(bad)


def test_production_packages_never_import_devstack_at_module_level() -> None:
    bad = [
        str(imp)
        for package in PRODUCTION
        for path in _sources(package)
        for imp in imports_of(path)
        if _top(imp.target) == "devstack" and not imp.lazy
    ]
    assert not bad, "devstack is dev tooling; production code imports it only lazily:\n" + "\n".join(bad)


def test_the_import_walker_sees_lazy_relative_and_dynamic_imports() -> None:
    """The checks above are only as good as `imports_of`."""
    source = textwrap.dedent("""
        import executor.runner
        from . import chain
        from .. import executor as ex
        import importlib
        if True:
            from protocol import spec
        def f():
            from devstack.stack import DevStack
            importlib.import_module("cod.api")
        class C:
            def m(self):
                import bridge.ledger
    """)
    found = {(i.target, i.lazy) for i in imports_of(ROOT / "bridge" / "probe.py", source)}
    assert found == {("executor.runner", False), ("bridge.chain", False), ("executor", False),
                     ("importlib", False), ("protocol", False), ("devstack.stack", True),
                     ("cod.api", True), ("bridge.ledger", True)}
    (imp,) = imports_of(ROOT / "bridge" / "probe.py", "\n\nimport executor\n")
    assert str(imp) == "bridge/probe.py:3: imports executor"


# --- importing runs nothing ------------------------------------------------------------------------

# Programs a module could be tempted to start at import; each fake notes its name and fails.
FAKE_PROGRAMS = ("nvidia-smi", "docker", "ipfs", "anvil", "redis-server", "celery", "dockerd", "kubo")

# Modules that run a program by design (`python -m cod.cli`), or need a context (alembic's env.py
# and versions are not packages, so walk_packages does not reach them anyway).
SKIP = ("cod.cli.__main__", "bridge.migrations")

PROBE = textwrap.dedent(r"""
    import importlib, json, os, pkgutil, shutil, socket, subprocess, sys, traceback

    root, fakes, packages, skip = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
    sys.path.insert(0, root)
    events, current = [], ["(start)"]

    def note(kind, what):
        stack = traceback.format_stack()[:-2]
        events.append({"kind": kind, "what": what, "module": current[0], "stack": "".join(stack[-12:])})

    def refuse(kind):
        def patched(self, *args, **kwargs):
            note(kind, repr(args))
            raise OSError(f"no {kind} at import")
        return patched

    socket.socket.connect = refuse("connect")
    socket.socket.connect_ex = refuse("connect")
    socket.socket.listen = refuse("listen")
    _getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        note("getaddrinfo", repr(host))
        raise socket.gaierror(f"no name lookup at import: {host!r}")

    socket.getaddrinfo = getaddrinfo
    _popen_init = subprocess.Popen.__init__

    def popen_init(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        note("subprocess", repr(argv))
        program = str(kwargs.get("executable") or argv[0]).split()[0]
        resolved = shutil.which(program)
        if resolved is None or os.path.dirname(os.path.abspath(resolved)) != fakes:
            raise FileNotFoundError(program)  # only the fakes may run: nothing real is started
        _popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = popen_init
    _system = os.system

    def system(command):
        note("os.system", repr(command))
        return 127

    os.system = system
    for package in packages:
        current[0] = package
        try:
            names = [package] + [m.name for m in pkgutil.walk_packages(
                importlib.import_module(package).__path__, package + ".")
                if not m.name.startswith(tuple(skip))]
        except Exception as exc:
            events.append({"kind": "import error", "what": repr(exc), "module": package,
                           "stack": traceback.format_exc()})
            continue
        for name in names:
            current[0] = name
            try:
                importlib.import_module(name)
            except BaseException as exc:
                events.append({"kind": "import error", "what": repr(exc), "module": name,
                               "stack": traceback.format_exc()})
    print("EVENTS" + json.dumps(events))
""")


def _tolerated(event: dict[str, str]) -> bool:
    """pycryptodome's CPU-feature probe calls `platform.architecture()`, which asks `file -b` about
    the interpreter (and copes with its absence): a library's, not ours, and not one of the fakes."""
    return event["kind"] == "subprocess" and event["what"].startswith("['file', '-b'") and \
        "in _syscmd_file" in event["stack"]


def test_importing_every_module_runs_no_program_and_opens_no_connection(tmp_path: Path) -> None:
    fakes = tmp_path / "bin"
    fakes.mkdir()
    marker = tmp_path / "ran"
    for name in FAKE_PROGRAMS:
        fake = fakes / name
        fake.write_text(f"#!/bin/sh\necho {name} \"$@\" >> '{marker}'\nexit 1\n")
        fake.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    # Nothing of the test session's environment (COD_* settings, a devstack's variables) leaks in.
    env = {"PATH": str(fakes), "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT), str(fakes), ",".join(PACKAGES), ",".join(SKIP)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    out = result.stdout.rpartition("EVENTS")[2]
    assert result.returncode == 0 and out, f"the import probe failed:\n{result.stdout}\n{result.stderr}"
    events = [e for e in json.loads(out) if not _tolerated(e)]
    report = "\n".join(f"{e['kind']} {e['what']} while importing {e['module']}:\n{e['stack']}"
                       for e in events)
    assert not events, f"importing the packages did work it should leave to a function:\n{report}"
    ran = marker.read_text() if marker.exists() else ""
    assert not marker.exists(), f"importing the packages ran programs:\n{ran}"


def test_the_probe_catches_import_time_work(tmp_path: Path) -> None:
    """The probe itself: a module that runs a (fake) program and connects at import is caught."""
    pkg = tmp_path / "src" / "naughty"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "probe.py").write_text(textwrap.dedent("""
        import socket, subprocess
        subprocess.run(["nvidia-smi", "-L"], check=False)
        try:
            socket.socket().connect(("127.0.0.1", 9))
        except OSError:
            pass
    """))
    fakes = tmp_path / "bin"
    fakes.mkdir()
    marker = tmp_path / "ran"
    (fakes / "nvidia-smi").write_text(f"#!/bin/sh\necho nvidia-smi >> '{marker}'\n")
    (fakes / "nvidia-smi").chmod(0o755)
    env = {"PATH": str(fakes), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "src"), str(fakes), "naughty", "-"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    events = json.loads(result.stdout.rpartition("EVENTS")[2])
    kinds = {(e["kind"], e["module"]) for e in events}
    assert ("subprocess", "naughty.probe") in kinds
    assert ("connect", "naughty.probe") in kinds
    assert marker.read_text().strip() == "nvidia-smi"
