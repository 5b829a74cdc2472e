"""The serving-target kinds: each registered driver carries its facts and the whole contract."""

from __future__ import annotations

import inspect

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
