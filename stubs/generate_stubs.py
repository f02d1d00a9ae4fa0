"""Generate the ``polyflow-stubs`` package (PEP 561 stubs) from the SDK as it is installed.

Usage: ``python stubs/generate_stubs.py`` writes ``stubs/polyflow-stubs/polyflow-stubs``;
``python stubs/generate_stubs.py --check`` generates into a temporary folder and exits 1 when
the committed stubs differ (CI runs this); ``--out DIR`` writes into ``DIR`` instead, with
the distribution's ``pyproject.toml``, so ``pip install DIR`` installs stubs made for the
environment the generator ran in (with its plugins' decorators).

What goes in:

* Every public module of the SDK (``polyflow`` and its submodules whose names do not start
  with ``_``), each name of its ``__all__`` re-exported from the module that defines it. A
  definition is stubbed from the imported object (signatures, overloads, properties, class
  attributes, defaults) and its source (annotations as written, attribute docstrings, the
  attributes ``__init__`` sets); the private modules that define public names get a stub
  holding just the names the public surface needs.
* Every registered step decorator (entry-point group ``polyflow.decorators``). Those that
  ``polyflow`` exports as typed functions (the built-ins) come with their public module, their
  keyword arguments checked against the class's ``defaults``; each other one (a plugin's) is
  written as a ``polyflow.<name>`` function usable bare and with keyword arguments, whose
  types and defaults come from its class (see :func:`decorator_attributes`).
* The wire layer's ``.pyi`` (``stubs/wire/polyflow/api``, made by mypy-protobuf), copied as is.

A few members whose runtime signature is dynamic get their typed form from
``_stubgen.OVERRIDES``; a few are left out on purpose (``_stubgen.EXCLUDED``).
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import importlib
import importlib.metadata
import inspect
import keyword
import pkgutil
import re
import shutil
import sys
import tempfile
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from _stubgen import (
    SDK,
    GenerationError,
    Generator,
    StubModule,
    default_text,
    is_sdk,
    own_doc,
    render_doc,
)

REPO = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = REPO / "stubs" / "polyflow-stubs"
"""The stub distribution's folder (its ``pyproject.toml`` is hand-written)."""
STUB_DIR = "polyflow-stubs"
"""The stub-only package inside it, as PEP 561 names it."""
WIRE_API = REPO / "stubs" / "wire" / "polyflow" / "api"
"""The generated wire layer whose ``.pyi`` are shipped too."""

# -- step decorators ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecoratorAttribute:
    """One keyword argument of a step decorator, as the stub declares it."""

    name: str
    """The attribute's name."""
    annotation: str
    """Its type, as stub text."""
    default: str
    """Its default, as stub text."""
    doc: str
    """What the decorator's docstring says of it (empty when nothing)."""


_ARG_LINE = re.compile(r"^\s{2,}([A-Za-z_][A-Za-z0-9_]*)(?:\s*\(([^)]*)\))?:\s*(.*)$")


def docstring_arguments(doc: str | None) -> dict[str, tuple[str, str]]:
    """``name -> (type, description)`` from the ``Args:``/``Attributes:`` section of a
    Google-style docstring (the type is empty unless written as ``name (type): ...``)."""
    found: dict[str, tuple[str, str]] = {}
    section = False
    current: str | None = None
    for line in (doc or "").splitlines():
        if line.strip() in {"Args:", "Arguments:", "Attributes:", "Parameters:"}:
            section, current = True, None
            continue
        if not section:
            continue
        if line.strip() and not line.startswith(" "):
            section = False  # the next section
            continue
        match = _ARG_LINE.match(line)
        if match and len(line) - len(line.lstrip()) <= 4:
            current = match.group(1)
            found[current] = ((match.group(2) or "").strip(), match.group(3).strip())
        elif current is not None and line.strip():
            kind, text = found[current]
            found[current] = (kind, f"{text} {line.strip()}".strip())
    return found


def _type_of_default(value: object) -> str:
    if value is None:
        return "Any | None"
    if isinstance(value, bool | int | float | str | bytes):
        return type(value).__name__
    if isinstance(value, dict):
        return "dict[str, Any]"
    if isinstance(value, list | tuple | set | frozenset):
        return f"{type(value).__name__}[Any]" if not isinstance(value, tuple) else "tuple[Any, ...]"
    return "Any"


class DecoratorSpec:
    """A registered step decorator as the stubs show it."""

    def __init__(self, name: str, cls: type, attributes: list[DecoratorAttribute]) -> None:
        """Describe decorator ``name``."""
        self.name = name
        self.cls = cls
        self.attributes = attributes


def decorator_attributes(gen: Generator, stub: StubModule, cls: type) -> list[DecoratorAttribute]:
    """The keyword arguments of a step decorator class, from what it declares.

    Names and defaults come from the class's ``defaults``. Each type comes from, in order:
    the class's own annotation of an attribute of that name (``times: int``), a
    ``name (type):`` entry in its docstring's ``Args:`` section, or the default's type
    (``None`` gives ``Any | None``). Descriptions come from that docstring section.
    """
    defaults: Mapping[str, Any] = getattr(cls, "defaults", {})
    documented = docstring_arguments(own_doc(cls))
    annotations = _class_annotations(gen, stub, cls, set(defaults))
    found: list[DecoratorAttribute] = []
    for name, default in defaults.items():
        kind, description = documented.get(name, ("", ""))
        annotation = annotations.get(name)
        if annotation is None and kind:
            annotation = _checked_doc_type(gen, stub, cls, kind)
        if annotation is None:
            annotation = _type_of_default(default)
        if "Any" in re.findall(r"[A-Za-z_]+", annotation):
            stub.import_from("typing", "Any")
        found.append(DecoratorAttribute(name, annotation, default_text(default), description))
    return found


def _class_annotations(
    gen: Generator, stub: StubModule, cls: type, names: set[str]
) -> dict[str, str]:
    """The class's own annotations of the attributes ``names``, as stub text."""
    raw: Mapping[str, Any] = inspect.get_annotations(cls)
    wanted = {name: value for name, value in raw.items() if name in names}
    if not wanted:
        return {}
    if is_sdk(cls.__module__):
        src = gen.source(cls.__module__)
        return {
            name: gen.refer(stub, src, value)
            if isinstance(value, str)
            else gen.runtime_annotation(stub, value)
            for name, value in wanted.items()
        }
    try:  # a plugin's class: evaluate its annotations in its own module
        hints = typing.get_type_hints(cls)
    except Exception as error:
        raise GenerationError(
            f"cannot evaluate the annotations of {cls.__module__}.{cls.__qualname__} "
            f"({error}); import the names they use at run time"
        ) from error
    return {name: gen.runtime_annotation(stub, hints[name]) for name in wanted}


def _checked_doc_type(gen: Generator, stub: StubModule, cls: type, text: str) -> str:
    """A type written in a docstring (``name (int | None): ...``), made resolvable."""
    if is_sdk(cls.__module__):
        return gen.refer(stub, gen.source(cls.__module__), text)
    module = sys.modules[cls.__module__]
    try:
        value = eval(text, vars(module))  # a plugin's own docstring, written as a type
    except Exception as error:
        raise GenerationError(
            f"{cls.__qualname__}: the docstring type {text!r} does not evaluate"
        ) from error
    return gen.runtime_annotation(stub, value)


def registered_decorators(
    gen: Generator, stub: StubModule
) -> tuple[list[DecoratorSpec], list[str]]:
    """Every registered step decorator (built-ins and the ``polyflow.decorators`` entry
    points) that ``polyflow`` does not already export as a typed function.

    For those it does export (the built-ins), the function's keyword arguments must be the
    class's attributes with the same defaults, or generation fails.

    Returns:
        The decorators to write into the stubs, and the names of the typed ones.
    """
    registry_module = importlib.import_module(f"{SDK}._authoring.decorators")
    registry = registry_module.default_registry()
    package = importlib.import_module(SDK)
    public = set(getattr(package, "__all__", ()))
    specs: list[DecoratorSpec] = []
    typed: list[str] = []
    for name in registry.names():
        cls = registry.get(name)
        if name in public:
            check_typed_decorator(name, getattr(package, name), cls)
            typed.append(name)
            continue
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            print(f"note: decorator {name!r} is not a Python name; left out", file=sys.stderr)
            continue
        specs.append(DecoratorSpec(name, cls, decorator_attributes(gen, stub, cls)))
    return specs, typed


def check_typed_decorator(name: str, func: object, cls: type) -> None:
    """Check that ``polyflow.<name>`` takes exactly the class's attributes and defaults."""
    if not callable(func):
        raise GenerationError(f"polyflow.{name} is not callable")
    params = {
        p.name: p.default
        for p in inspect.signature(func).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    defaults: Mapping[str, Any] = getattr(cls, "defaults", {})
    if set(params) != set(defaults):
        raise GenerationError(
            f"polyflow.{name} takes {sorted(params)} but {cls.__qualname__}.defaults has "
            f"{sorted(defaults)}"
        )
    for key, default in defaults.items():
        if params[key] != default:
            raise GenerationError(
                f"polyflow.{name}: {key} defaults to {params[key]!r}, but to {default!r} in "
                f"{cls.__qualname__}.defaults"
            )


def decorator_doc(spec: DecoratorSpec) -> str:
    """The decorator's docstring, with an ``Args:`` section when the class has none."""
    doc = own_doc(spec.cls) or f"The @{spec.name} step decorator."
    if spec.attributes and not docstring_arguments(doc):
        lines = [
            f"    {a.name}: {a.doc or 'Default'} (default ``{a.default}``)."
            for a in spec.attributes
        ]
        doc = f"{doc}\n\nArgs:\n" + "\n".join(lines)
    return f"Use as ``@{spec.name}`` or ``@{spec.name}(...)`` above ``@step``.\n\n{doc}"


def decorator_stub(spec: DecoratorSpec) -> str:
    """``polyflow.<name>``: usable bare above ``@step`` and with keyword arguments."""
    doc = render_doc(decorator_doc(spec), "    ")
    params = ", ".join(f"{a.name}: {a.annotation} = {a.default}" for a in spec.attributes)
    keyword = f"*, {params}" if params else ""
    lines = [
        "@overload",
        f"def {spec.name}(func: _StepFunction, /) -> _StepFunction:",
        *doc,
        "    ...",
        "@overload",
        f"def {spec.name}({keyword}) -> Callable[[_StepFunction], _StepFunction]:",
        *doc,
        "    ...",
    ]
    return "\n".join(lines)


def add_decorators(gen: Generator) -> list[str]:
    """Append the registered decorators ``polyflow`` does not type itself to its stub.

    Returns:
        The name of every registered decorator.
    """
    stub = gen.stub(SDK)
    specs, typed = registered_decorators(gen, stub)
    if not specs:
        return sorted(typed)
    for name, module in (
        ("overload", "typing"),
        ("TypeVar", "typing"),
        ("Any", "typing"),
        ("Callable", "collections.abc"),
    ):
        stub.import_from(module, name)
    stub.tail.append(
        "# Step decorators of installed plugins (entry-point group polyflow.decorators),\n"
        "# served by polyflow's module __getattr__ at run time.\n"
        '_StepFunction = TypeVar("_StepFunction", bound=Callable[..., Any])'
    )
    stub.tail += [decorator_stub(spec) for spec in specs]
    return sorted([*typed, *(spec.name for spec in specs)])


# -- the package --------------------------------------------------------------------------


def public_modules(package: str = SDK) -> list[str]:
    """The SDK's public modules: the package and its submodules without a leading
    underscore, recursively (the wire layer ``polyflow.api`` is shipped separately)."""
    found = [package]
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.startswith("_") or f"{package}.{info.name}" == f"{SDK}.api":
            continue
        name = f"{package}.{info.name}"
        found += public_modules(name) if info.ispkg else [name]
    return found


def stub_path(module: str, is_package: bool) -> Path:
    """Where the stub of ``module`` goes inside the stub package."""
    parts = module.split(".")[1:]
    if is_package:
        return Path(*parts, "__init__.pyi") if parts else Path("__init__.pyi")
    return Path(*parts[:-1], parts[-1] + ".pyi")


def generate(out: Path) -> list[str]:
    """Write the stub package into ``out`` (``out/polyflow-stubs`` and ``out/VERSION``).

    Returns:
        The decorators included.
    """
    gen = Generator()
    gen.run(public_modules())
    decorators = add_decorators(gen)
    gen.run(())  # what the decorators' annotations refer to
    target = out / STUB_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    files: dict[Path, str] = {}
    for name, stub in gen.stubs.items():
        files[stub_path(name, stub.source.is_package)] = stub.render()
    # Packages above a stubbed module need an __init__.pyi too.
    for name in list(gen.stubs):
        parent = name.rpartition(".")[0]
        while parent and is_sdk(parent):
            path = stub_path(parent, True)
            if path not in files:
                files[path] = StubModule(gen.source(parent)).render()
            parent = parent.rpartition(".")[0]
    for path, text in files.items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_text(text, encoding="utf-8")
    copy_wire(target / "api")
    (out / "VERSION").write_text(importlib.metadata.version(SDK) + "\n", encoding="utf-8")
    for name in ("pyproject.toml", "README.md"):  # so that another --out folder installs too
        if not (out / name).exists():
            shutil.copyfile(PACKAGE_ROOT / name, out / name)
    return decorators


def copy_wire(target: Path) -> None:
    """Copy the wire layer's ``.pyi``, with an ``__init__.pyi`` per package."""
    for folder in [WIRE_API, *sorted(p for p in WIRE_API.rglob("*") if p.is_dir())]:
        if folder.name == "__pycache__":
            continue
        rel = folder.relative_to(WIRE_API)
        (target / rel).mkdir(parents=True, exist_ok=True)
        init = folder / "__init__.py"
        if init.exists():
            (target / rel / "__init__.pyi").write_text(init.read_text(encoding="utf-8"))
        for pyi in sorted(folder.glob("*.pyi")):
            shutil.copyfile(pyi, target / rel / pyi.name)


def _differences(left: Path, right: Path) -> list[str]:
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [str(left / n) for n in cmp.left_only + cmp.right_only + cmp.diff_files]
    found += [str(left / n) for n in cmp.funny_files]
    for sub in cmp.common_dirs:
        found += _differences(left / sub, right / sub)
    # dircmp compares shallowly (size and mtime); compare the common files' bytes.
    for name in cmp.same_files:
        if (left / name).read_bytes() != (right / name).read_bytes():
            found.append(str(left / name))
    return found


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    parser.add_argument("--out", type=Path, default=PACKAGE_ROOT, help="where to write")
    args = parser.parse_args(argv)
    if not args.check:
        decorators = generate(args.out)
        print(f"wrote {args.out / STUB_DIR} (decorators: {', '.join(decorators) or 'none'})")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = _differences(args.out / STUB_DIR, Path(tmp) / STUB_DIR)
        if (args.out / "VERSION").read_bytes() != (Path(tmp) / "VERSION").read_bytes():
            stale.append(str(args.out / "VERSION"))
    if stale:
        print("stale polyflow-stubs; run: python stubs/generate_stubs.py", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("polyflow-stubs are current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
