"""The API reference cannot rot: every public Python name has a docstring that names each of its
arguments, and the documentation site (mkdocs.yml: docs/*.md and docs/api.md, rendered from the
docstrings by mkdocstrings) builds with warnings as errors and shows every public name.

The public API is what a user imports: ``saltatory``'s ``__all__`` and the modules in
``API_MODULES`` (their ``__all__``, else the functions and classes they define without a leading
underscore), with each class's public methods and properties, inherited ones included. Not part
of it: ``saltatory._core`` (private; typed by ``_core.pyi``, see test_stubs.py) and
``saltatory.bench``, the benchmark command, whose interface is its command line
(``python -m saltatory.bench --help``, docs/ on benchmarks).

Build the site by hand with ``mkdocs build --strict --site-dir /tmp/saltatory-site``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: the documented modules, in the order of docs/api.md; a name is documented under the first
#: module that exports it (so saltatory.LIF, not saltatory.nn.LIF or saltatory.torch.LIF)
API_MODULES = ["saltatory", "saltatory.losses", "saltatory.optim", "saltatory.data", "saltatory.nn",
               "saltatory.spikes", "saltatory.checkpoint", "saltatory.torch", "saltatory.nir",
               "saltatory.distributed", "saltatory.plots", "saltatory.train", "saltatory.ipu_plan"]
#: modules that need an optional package, and that package
OPTIONAL = {"saltatory.torch": "torch", "saltatory.nir": "nir"}
#: modules of the package that are not API: the benchmark command and ``python -m saltatory``
NOT_API = {"bench", "__main__"}
#: arguments no docstring needs to name: the receiver. (Variadic ``*layers`` and ``**options``
#: are skipped too; their docstrings describe them in words, e.g. "the options of saltatory.LIF".)
EXEMPT = {"self", "cls"}


def _modules() -> list[types.ModuleType]:
    modules = []
    for name in API_MODULES:
        if name in OPTIONAL and importlib.util.find_spec(OPTIONAL[name]) is None:
            continue  # test_optional_modules_checked says which were left out
        modules.append(importlib.import_module(name))
    return modules


def _exported(module: types.ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == module.__name__]


def _ours(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "saltatory"


def public_api() -> list[tuple[str, object]]:
    """(documented path, object) of every public function, class, method and property, each
    object once, under the first path that exports it."""
    seen, api = set(), []

    def add(path: str, obj) -> None:
        key = id(obj)
        if key not in seen:
            seen.add(key)
            api.append((path, obj))

    for module in _modules():
        for name in _exported(module):
            value = getattr(module, name)
            if isinstance(value, types.ModuleType):
                continue  # a submodule: documented in its own section
            if not (inspect.isclass(value) or callable(value)) or not _ours(value):
                continue  # constants (documented by #: comments where they have meaning)
            path = f"{module.__name__}.{name}"
            add(path, value)
            if inspect.isclass(value):
                for member, attr in _members(value):
                    add(f"{path}.{member}", attr)
    return api


def _members(cls) -> list[tuple[str, object]]:
    """Public methods and properties of ``cls`` defined in Saltatory classes (not torch's, not
    object's): the function objects, unwrapped from classmethod / staticmethod / property."""
    members = {}
    for base in reversed(cls.__mro__):
        if not _ours(base):
            continue
        for name, attr in vars(base).items():
            if name.startswith("_"):
                continue
            if isinstance(attr, (classmethod, staticmethod)):
                attr = attr.__func__
            if isinstance(attr, property) or inspect.isfunction(attr):
                members[name] = attr
    return sorted(members.items())


def _doc(obj) -> str:
    return (obj.fget.__doc__ if isinstance(obj, property) else obj.__doc__) or ""


def _parameters(obj) -> list[str]:
    """Argument names a docstring must mention (a class: those of its own __init__)."""
    if isinstance(obj, property):
        return []
    if inspect.isclass(obj):
        if "__init__" not in vars(obj):
            return []  # an inherited constructor (e.g. an exception's), documented with its class
        obj = obj.__init__
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in inspect.signature(obj).parameters.values()
            if p.name not in EXEMPT and p.kind not in variadic]


def _full_doc(obj) -> str:
    """What documents ``obj``: its docstring, for a class also its __init__'s."""
    doc = _doc(obj)
    if inspect.isclass(obj) and "__init__" in vars(obj):
        doc += "\n" + (obj.__init__.__doc__ or "")
    return doc


def undocumented() -> list[str]:
    problems = []
    for path, obj in public_api():
        doc = _full_doc(obj)
        if not doc.strip():
            problems.append(f"{path}: no docstring")
            continue
        missing = [p for p in _parameters(obj) if not re.search(rf"(?<![\w]){re.escape(p)}(?![\w])", doc)]
        if missing:
            problems.append(f"{path}: docstring does not mention {', '.join(missing)}")
    return problems


def test_optional_modules_checked() -> None:
    missing = [f"{name} (needs {package})" for name, package in OPTIONAL.items()
               if importlib.util.find_spec(package) is None]
    if missing:
        pytest.skip(f"not importable here, so their docstrings go unchecked: {', '.join(missing)}")


def test_every_module_is_listed() -> None:
    """A new public module of the package joins API_MODULES (and docs/api.md)."""
    import saltatory

    modules = {f"saltatory.{m.name}" for m in pkgutil.iter_modules(saltatory.__path__)
               if not m.name.startswith("_") and m.name not in NOT_API}
    assert modules - set(API_MODULES) == set(), "add these modules to API_MODULES and docs/api.md"


def test_public_api_is_found() -> None:
    paths = {path for path, _ in public_api()}
    assert {"saltatory.LIF", "saltatory.Sequential.backward", "saltatory.SpikeTensor.from_dense",
            "saltatory.data.Loader", "saltatory.optim.Adam", "saltatory.losses.predict"} <= paths


def test_every_public_name_documents_every_argument() -> None:
    problems = undocumented()
    assert not problems, ("public names whose docstrings are missing or skip an argument:\n  "
                          + "\n  ".join(problems))


def test_doc_links_resolve() -> None:
    """Every relative link of docs/*.md names a file that exists. (mkdocs.yml only notes links
    that leave docs/, such as ../README.md, since the site cannot tell them from broken ones; this
    check covers both. Anchors are left to mkdocs, which notes missing ones in its log.)"""
    broken = []
    for page in sorted((REPO / "docs").glob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks and spans
        text = re.sub(r"`[^`\n]*`", "", text)
        for match in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text):
            target = match.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"docs/{page.name}: {target}")
    assert not broken, "links to files that do not exist:\n  " + "\n  ".join(broken)


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds, and the API page has an entry for every public name."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install mkdocs "
                                         "'mkdocstrings[python]'; scripts/setup installs them)")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (pip install "
                                               "'mkdocstrings[python]'; scripts/setup installs it)")
    site = tmp_path / "site"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, f"mkdocs build --strict failed ({seconds:.1f} s):\n{result.stderr}"
    api_page = site / "api" / "index.html"
    assert api_page.is_file(), sorted(p.name for p in site.iterdir())
    html = api_page.read_text()
    anchors = set(re.findall(r'id="([\w.]+)"', html))
    missing = [path for path, _ in public_api() if path not in anchors]
    assert not missing, ("public names without an entry on the API page (add them to docs/api.md):\n  "
                         + "\n  ".join(missing))
    for page in ("method", "architecture"):
        assert (site / page / "index.html").is_file(), f"docs/{page}.md was not built"
