"""The public API: every exported name exists and says what it does."""

from __future__ import annotations

import inspect

import pytest

import prana
import prana.actors
import prana.storage

FACADES = [prana, prana.actors, prana.storage]


@pytest.mark.parametrize("module", FACADES, ids=lambda module: module.__name__)
def test_every_public_name_is_exported_and_documented(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert isinstance(exported, tuple)  # kept in order by ruff (RUF022)
    for name in exported:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"  # type: ignore[attr-defined]
    public = {
        name
        for name in vars(module)
        if not name.startswith("_") and not inspect.ismodule(getattr(module, name))
    }
    assert public <= set(exported) | {"annotations"}


def test_builtin_actions_are_registered_and_documented() -> None:
    actions = prana.ActionRegistry()
    expected = {
        "manual.trigger", "webhook.trigger", "schedule.trigger", "function.trigger", "event.trigger",
        "core.noop", "core.log", "core.fail", "core.for_each",
        "logic.if", "logic.switch", "data.set", "data.merge", "workflow.set_variables",
        "wait.interval", "wait.until", "wait.webhook", "workflow.execute", "webhook.respond",
    }  # fmt: skip
    assert set(actions) == expected
    for name in actions:
        assert actions[name].description, name


def test_registering_twice_is_refused() -> None:
    actions = prana.ActionRegistry()
    with pytest.raises(ValueError, match="already registered"):
        actions.action("core.noop")(lambda ctx: None)
    with pytest.raises(ValueError, match="dotted words"):
        actions.action("noop")(lambda ctx: None)
    with pytest.raises(KeyError, match=r"did you mean 'core\.noop'"):
        actions["core.nop"]
