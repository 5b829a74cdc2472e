"""The serving-target kinds Slipway deploys to, found by kind.

Adding a kind means adding its driver module in this package (a class with the
`TargetDriver` attributes and methods) and one line to `DRIVERS`. Only kinds listed here can
be registered: each is fully wired, deploy, rollback, undeploy and health check alike.
"""

from __future__ import annotations

from workers.engine.targets.base import TargetDriver, TargetError, TargetSettings
from workers.engine.targets.triton import TritonTarget

DRIVERS: dict[str, type[TargetDriver]] = {
    TritonTarget.kind: TritonTarget,
}


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
