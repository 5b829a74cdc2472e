"""Finding plug-ins: the classes the modules of a package define, by the name each declares.

Runtime backends (`backends.registry`) and serving-target drivers (`targets.registry`) are
found the same way, so that adding one is adding its module: every module of the package
that does not start with "_" (and is not one of the package's own helpers) is imported, and
each class it defines that `name_of` names is registered under that name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Collection
from types import ModuleType


def discover(package: ModuleType, *, skip: Collection[str], name_of: Callable[[type], str | None], what: str) -> dict:
    """{name: class} over the modules of `package`; `name_of(cls)` is a class's name, or None for a
    class that is not a plug-in. Two plug-ins of one name stop the start, naming both modules."""
    found: dict[str, type] = {}
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        if module_info.name.startswith("_") or module_info.name in skip:
            continue
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for _, member in inspect.getmembers(module, inspect.isclass):
            if member.__module__ != module.__name__:
                continue
            name = name_of(member)
            if not name:
                continue
            if name in found:
                raise RuntimeError(
                    f"Two {what} are named '{name}': {found[name].__module__} and {member.__module__}; rename one."
                )
            found[name] = member
    return found
