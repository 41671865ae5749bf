"""The method registry: names -> method classes, from three sources.

- built-ins: indexed lazily in ``cmh_bench.methods.BUILTIN_METHODS`` (listing imports no torch);
- installed packages: the entry-point group ``cmh_bench.methods``; an entry point names either a
  HashingMethod subclass (registered under the entry point's name) or a module whose
  :func:`register_method` decorators register its methods;
- ad-hoc files: ``--plugin path.py``, loaded with :func:`load_plugin_file`; its decorators register.

A duplicate name is an error naming both sources; an unknown name suggests the closest ones.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from cmh_bench.errors import UserError

ENTRY_POINT_GROUP = "cmh_bench.methods"
ROLES = ("method", "label-free", "reference", "upper-bound")


@dataclass(frozen=True)
class MethodEntry:
    """One registered method name: where its class is, and what makes this name a variant."""

    name: str
    target: str  # "module:Class"
    source: str  # "built-in", "entry point <dist>", "plugin file <path>"
    version: str
    paper: str
    role: str = "method"
    variant: dict = field(default_factory=dict)  # hyper-parameter overrides of this name
    summary: str = ""

    def load(self):
        """Import and return the method class; UserError if the role is "label-free" but the class reads labels."""
        module_name, _, class_name = self.target.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        if self.role == "label-free" and getattr(cls, "uses_labels", True):
            raise UserError(f"method {self.name!r} ({self.source}) has role label-free but {self.target} reads labels; "
                            "set uses_labels = False on the class or register it with another role")
        return cls


_decorated: dict[str, MethodEntry] = {}  # filled by register_method while a plugin module is imported
_plugin_files: dict[str, str] = {}  # resolved path -> module name


def register_method(name: str, *, variants: dict[str, dict] | None = None, role: str = "method", summary: str = ""):
    """Class decorator for plugin methods: registers ``name`` (and each variant name -> overrides)."""

    def decorate(cls):
        source = _source_of(cls)
        for entry_name, overrides in {name: {}, **(variants or {})}.items():
            entry = MethodEntry(
                name=entry_name,
                target=f"{cls.__module__}:{cls.__qualname__}",
                source=source,
                version=str(cls.version),
                paper=cls.paper,
                role=role,
                variant=dict(overrides),
                summary=summary or (cls.__doc__ or "").strip().split("\n")[0],
            )
            _add(_decorated, entry)
        return cls

    return decorate


def load_plugin_file(path: str | Path) -> None:
    """Import a method file given by path (``--plugin``); its register_method decorators register."""
    resolved = Path(path).expanduser().resolve()
    if str(resolved) in _plugin_files:
        return
    if not resolved.is_file():
        raise UserError(f"plugin file {path} does not exist; give the path of a .py file defining a method")
    module_name = f"cmh_bench_plugin_{len(_plugin_files)}_{resolved.stem}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _plugin_files[str(resolved)] = module_name
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the plugin's own code failed: one line naming file, line and error
        del sys.modules[module_name], _plugin_files[str(resolved)]
        if isinstance(error, UserError):
            raise
        raise UserError(f"plugin {path}, line {_failing_line(error, resolved)}: {type(error).__name__}: "
                        f"{getattr(error, 'msg', None) or error}; fix the file or leave out --plugin") from None


def _failing_line(error: Exception, path: Path) -> int | str:
    """The line of ``path`` where ``error`` arose: a SyntaxError's own line, else the deepest traceback frame in the file."""
    if isinstance(error, SyntaxError) and error.lineno is not None:
        return error.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename).resolve() == path]
    return lines[-1] if lines else "?"


def all_methods() -> dict[str, MethodEntry]:
    """Every registered method by name: built-ins, then entry points, then plugin files."""
    from cmh_bench.methods import BUILTIN_METHODS

    entries: dict[str, MethodEntry] = {}
    for name, target, version, paper, role, variant, summary in BUILTIN_METHODS:
        _add(entries, MethodEntry(name, f"cmh_bench.methods.{target}", "built-in", version, paper, role, variant, summary))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        if inspect.isclass(loaded):
            _add(entries, MethodEntry(
                name=ep.name, target=f"{loaded.__module__}:{loaded.__qualname__}",
                source=f"entry point {ep.dist.name if ep.dist else ep.value}", version=str(loaded.version),
                paper=loaded.paper, summary=(loaded.__doc__ or "").strip().split("\n")[0],
            ))
    for entry in _decorated.values():
        _add(entries, entry)
    return entries


def get_method(name: str) -> MethodEntry:
    """The entry registered as ``name``; an unknown name raises UserError with the closest names."""
    entries = all_methods()
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `cmh-bench list methods`"
        raise UserError(f"unknown method {name!r}; {hint}")
    return entries[name]


def _add(entries: dict[str, MethodEntry], entry: MethodEntry) -> None:
    if entry.role not in ROLES:
        raise UserError(f"method {entry.name!r} ({entry.source}): role {entry.role!r} is not one of {ROLES}")
    existing = entries.get(entry.name)
    if existing is not None and (existing.source, existing.target) != (entry.source, entry.target):
        raise UserError(
            f"method name {entry.name!r} is registered twice: by {existing.source} ({existing.target}) "
            f"and by {entry.source} ({entry.target}); rename one of them"
        )
    entries[entry.name] = entry


def _source_of(cls) -> str:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if path and str(Path(path).resolve()) in _plugin_files:
        return f"plugin file {path}"
    dist = importlib.metadata.packages_distributions().get(cls.__module__.split(".")[0], [None])[0]
    return f"entry point {dist}" if dist else f"module {cls.__module__}"
