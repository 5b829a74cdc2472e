"""The serving-target kinds: each registered driver carries its facts and the whole contract."""

from __future__ import annotations

import inspect
import sys

import pytest

from workers.engine.targets.base import TargetDriver, TargetError, TargetSettings
from workers.engine.targets.registry import DRIVERS, driver_class, get_driver
from workers.engine.targets.triton import TritonTarget

CONTRACT = [name for name, member in vars(TargetDriver).items() if inspect.isfunction(member) and name != "__init__"]


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_every_driver_declares_its_facts_and_implements_the_contract(kind: str) -> None:
    driver = DRIVERS[kind]
    assert driver.kind == kind and driver.label
    assert driver.option_keys and all(isinstance(what, str) and what for what in driver.option_keys.values())
    assert all(isinstance(what, str) and what for what in driver.credential_keys.values())
    assert not set(driver.option_keys) & set(driver.credential_keys), "a key is either a secret or not"
    assert {"deploy", "rollback", "served_versions", "retire", "remove_model", "health"} <= set(CONTRACT)
    for name in CONTRACT:
        assert callable(getattr(driver, name, None)), f"{kind} lacks {name}"


def test_the_settings_kind_picks_the_driver(tmp_path) -> None:
    settings = TargetSettings(name="t", url="http://127.0.0.1:1", repository=str(tmp_path))
    assert type(get_driver(settings)) is TritonTarget


def test_an_unknown_kind_names_the_kinds_there_are(tmp_path) -> None:
    with pytest.raises(TargetError) as refused:
        driver_class("kserve")
    assert refused.value.code == "unknown_target_kind"
    assert refused.value.message == "Slipway does not deploy to 'kserve' targets; it deploys to: triton."
    settings = TargetSettings(name="t", url="http://127.0.0.1:1", repository=str(tmp_path), kind="kserve")
    with pytest.raises(TargetError):
        get_driver(settings)


DRIVER_MODULE = """
from workers.engine.targets.base import TargetHealth


class EchoTarget:
    kind = "echo"
    label = "Echo server"
    option_keys = {"greeting": "what it answers"}
    credential_keys = {}

    def __init__(self, settings):
        self.settings = settings

    def health(self):
        return TargetHealth(reachable=True, live=True, ready=True, server_name="echo")
{methods}
"""
OTHER_METHODS = "".join(
    f"\n    def {name}(self, *args, **kwargs):\n        return ()\n" for name in CONTRACT if name != "health"
)


@pytest.fixture
def drop_in(tmp_path, monkeypatch):
    """Put a module into the targets package (by extending its search path), as adding a
    driver file would; the registry is re-read from the package."""
    from workers.engine import targets
    from workers.engine.targets import registry

    monkeypatch.setattr(targets, "__path__", [*targets.__path__, str(tmp_path)])

    def add(name: str, text: str) -> dict:
        (tmp_path / f"{name}.py").write_text(text)
        monkeypatch.delitem(sys.modules, f"workers.engine.targets.{name}", raising=False)
        return registry._discover()

    yield add
    for path in tmp_path.glob("*.py"):
        sys.modules.pop(f"workers.engine.targets.{path.stem}", None)


def test_a_driver_module_is_all_it_takes_to_add_a_kind(drop_in) -> None:
    found = drop_in("echo_driver", DRIVER_MODULE.replace("{methods}", OTHER_METHODS))
    assert set(found) == {"triton", "echo"}
    echo = found["echo"]
    assert echo.label == "Echo server" and echo.option_keys == {"greeting": "what it answers"}
    health = echo(TargetSettings(name="t", url="http://127.0.0.1:1", repository="/tmp")).health()
    assert health.live and health.server_name == "echo"


def test_a_driver_missing_part_of_the_contract_is_refused_by_name(drop_in) -> None:
    with pytest.raises(RuntimeError, match=r"EchoTarget declares the serving-target kind 'echo' but lacks deploy"):
        drop_in("half_driver", DRIVER_MODULE.replace("{methods}", ""))


def test_two_drivers_of_one_kind_are_refused(drop_in) -> None:
    with pytest.raises(RuntimeError, match="Two serving-target drivers are named 'triton'"):
        drop_in("other_triton", DRIVER_MODULE.replace("{methods}", OTHER_METHODS).replace('"echo"', '"triton"'))
