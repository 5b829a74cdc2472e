"""Each runtime backend declares the facts the rest of the engine needs about it (thread count
argument, thread safety of its sessions, the packages that serve its variants): nothing else
keeps a table of backend names."""

from __future__ import annotations

import inspect

import pytest

from workers.engine.backends.base import Backend
from workers.engine.backends.registry import BACKENDS


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_a_declared_thread_argument_is_one_the_constructor_takes(name: str) -> None:
    backend_class = BACKENDS[name]
    parameters = inspect.signature(backend_class.__init__).parameters
    if backend_class.thread_argument is None:
        assert not {"threads", "num_threads", "intra_op_threads"} & set(parameters), name
    else:
        assert backend_class.thread_argument in parameters, name
        backend = backend_class(**{backend_class.thread_argument: 3})
        assert 3 in vars(backend).values(), f"{name} drops its thread count"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_names_the_packages_that_serve_its_variants(name: str) -> None:
    requirements = BACKENDS[name].serving_requirements
    assert requirements and "numpy" in requirements, name
    assert all(package and package == package.strip() for package in requirements)


def test_only_onnxruntime_sessions_are_shared_between_threads() -> None:
    assert {name for name, backend_class in BACKENDS.items() if backend_class.thread_safe_sessions} == {"onnxruntime"}
    assert Backend.thread_safe_sessions is False and Backend.serving_requirements == ()
