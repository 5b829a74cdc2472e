"""The serving-target kinds Slipway deploys to, found by kind.

A serving-target kind is one module of this package (not starting with "_") that defines a
driver class: a class with a non-empty `kind` and everything `TargetDriver` declares (its
facts as class attributes, its methods). The registry finds it there, so adding a kind is
adding its driver module (and its test). Only kinds found here can be registered: each is
fully wired, deploy, rollback, undeploy and health check alike.
"""

from __future__ import annotations

import inspect
from typing import TypeGuard

from workers.engine import targets as _package
from workers.engine.plugins import discover
from workers.engine.targets.base import TargetDriver, TargetError, TargetSettings

# What a class needs to count as a driver: the protocol's facts and methods.
FACTS = ("kind", "label", "option_keys", "credential_keys")
METHODS = tuple(
    name for name, member in vars(TargetDriver).items() if inspect.isfunction(member) and not name.startswith("_")
)


def is_driver(member: object) -> TypeGuard[type[TargetDriver]]:
    """Whether `member` is a driver class: it declares the contract's facts (a class with a
    `kind` and a `label`, its option and credential keys) and has all its methods. A class
    that declares the facts but lacks a method is a mistake, not something else: it raises."""
    if not inspect.isclass(member) or member is TargetDriver:
        return False
    kind = getattr(member, "kind", None)
    if not isinstance(kind, str) or not all(hasattr(member, name) for name in FACTS):
        return False
    missing = [name for name in METHODS if not callable(getattr(member, name, None))]
    if missing:
        raise RuntimeError(
            f"{member.__module__}.{member.__name__} declares the serving-target kind '{kind}' "
            f"but lacks {', '.join(missing)} of the TargetDriver contract (workers/engine/targets/base.py)."
        )
    return bool(kind)


def _kind_of(member: type) -> str | None:
    return member.kind if is_driver(member) else None


def _discover() -> dict[str, type[TargetDriver]]:
    return discover(_package, skip=("base", "registry"), name_of=_kind_of, what="serving-target drivers")


DRIVERS: dict[str, type[TargetDriver]] = _discover()


def driver_class(kind: str) -> type[TargetDriver]:
    """The driver of `kind`; TargetError("unknown_target_kind") naming the kinds there are."""
    try:
        return DRIVERS[kind]
    except KeyError:
        raise TargetError(
            "unknown_target_kind",
            f"Slipway does not deploy to '{kind}' targets; it deploys to: {', '.join(sorted(DRIVERS))}.",
        ) from None


def get_driver(settings: TargetSettings) -> TargetDriver:
    """A driver for the target `settings` describe (its `kind` picks the class)."""
    return driver_class(settings.kind)(settings)
