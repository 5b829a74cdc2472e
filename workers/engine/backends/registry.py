"""The runtime backends this worker knows, found by name.

A runtime backend is one module of this package (not starting with "_") that defines a
`Backend` subclass with a `name`: the registry finds it there, so adding a runtime is adding
its module (and its test). The modules import their runtimes inside methods, so listing
backends never fails on a missing runtime: a backend that is not installed reports None as
its version.
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.engine import backends as _package
from workers.engine.backends.base import Backend, TritonNative
from workers.engine.plugins import discover

# Modules of the package that hold the contract and helpers, not a backend.
_NOT_BACKENDS = frozenset({"base", "registry", "published"})


def _name_of(member: type) -> str | None:
    return member.name if issubclass(member, Backend) and member.name else None


BACKENDS: dict[str, type[Backend]] = discover(_package, skip=_NOT_BACKENDS, name_of=_name_of, what="backends")


def triton_native_formats() -> Mapping[str, TritonNative]:
    """The variant formats Triton serves natively, as the backends that write them declare."""
    formats: dict[str, TritonNative] = {}
    for backend_class in BACKENDS.values():
        for variant_format, native in backend_class.triton_native.items():
            if formats.setdefault(variant_format, native) != native:
                raise RuntimeError(f"Backends disagree on how Triton serves '{variant_format}' variants.")
    return formats


class UnknownBackend(KeyError):
    """No backend has the name asked for."""

    def __str__(self) -> str:
        # KeyError would show the message in quotes, as if it were a key.
        return str(self.args[0])


def get_backend(name: str) -> Backend:
    """A new instance of the backend called `name`.

    Raises UnknownBackend (a KeyError) naming the known backends when there is none.
    """
    try:
        backend_class = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS)) or "none"
        raise UnknownBackend(f"There is no backend named '{name}'; known backends: {known}.") from None
    return backend_class()


def installed_backends() -> dict[str, str | None]:
    """Each known backend's runtime version on this worker, or None where it is not installed."""
    return {name: backend_class().runtime_version() for name, backend_class in BACKENDS.items()}
