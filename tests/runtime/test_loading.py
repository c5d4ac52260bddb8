"""Loading and validating workflow definitions: every problem, with its path, at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import prana
from tests.helpers import workflow_dict

ACTIONS = prana.ActionRegistry()


def problems_of(source: Any, *, actions: prana.ActionRegistry | None = ACTIONS) -> list[str]:
    with pytest.raises(prana.WorkflowValidationError) as caught:
        prana.load_workflow(source, actions=actions)
    return [str(problem) for problem in caught.value.problems]


def valid(**overrides: Any) -> dict[str, Any]:
    base = workflow_dict({"start": "manual.trigger", "a": "core.noop"}, ["start -> a"])
    base.update(overrides)
    return base


def test_loads_yaml_json_dict_and_path(tmp_path: Path) -> None:
    yaml_text = """
id: shop
version: 2
name: Shop
nodes:
  - key: start
    type: manual.trigger
  - {key: a, type: core.noop}
connections:
  - {from: start, to: a}
"""
    from_yaml = prana.load_workflow(yaml_text)
    from_json = prana.load_workflow(json.dumps(prana.workflow_to_dict(from_yaml)))
    path = tmp_path / "shop.yaml"
    path.write_text(yaml_text)
    from_path = prana.load_workflow(path)
    from_str_path = prana.load_workflow(str(path))
    assert from_yaml == from_json == from_path == from_str_path
    assert (from_yaml.id, from_yaml.version, from_yaml.display_name) == ("shop", 2, "Shop")
    assert from_yaml.connections[0] == prana.Connection(from_="start", to="a")


def test_yaml_keeps_country_codes_and_dates_as_strings() -> None:
    workflow = prana.load_workflow(
        """
id: x
variables: {country: NO, flag: yes, on: off, day: 2024-01-02, real: true}
nodes: [{key: start, type: manual.trigger}]
"""
    )
    assert workflow.variables == {
        "country": "NO",
        "flag": "yes",
        "on": "off",
        "day": "2024-01-02",
        "real": True,
    }


def test_malformed_yaml_says_where() -> None:
    assert problems_of("id: x\nnodes:\n  - key: a\n   type: b\n") == [
        "line 4, column 4: invalid YAML: while parsing a block collection "
        "expected <block end>, but found '<block mapping start>'"
    ]


def test_malformed_json_says_where() -> None:
    assert problems_of('{"id": "x",\n "nodes": [}') == [
        "line 2, column 12: invalid JSON: Expecting value"
    ]


def test_duplicate_keys_in_yaml_and_json() -> None:
    assert problems_of("id: a\nid: b\nnodes: []\n", actions=None) == [
        "line 2: duplicate key 'id' (first given on line 1); remove one of them"
    ]
    assert problems_of('{"id": "a", "id": "b", "nodes": []}', actions=None) == [
        "duplicate key 'id' in a JSON object; remove one of them"
    ]


def test_wrong_types_are_reported_per_field() -> None:
    found = problems_of(
        {
            "id": 7,
            "version": "2",
            "nodes": [
                {"key": "start", "type": "manual.trigger", "params": []},
                "a",
                {"key": 1, "type": "core.noop"},
            ],
            "connections": {"from": "a"},
            "settings": {"concurrency": "4"},
            "variables": [1],
        }
    )
    assert found == [
        "id: expected a string, got a number (7)",
        "version: expected an integer, got a string ('2')",
        "settings.concurrency: expected an integer, got a string ('4')",
        "variables: expected an object, got a list",
        "nodes[0].params: expected an object, got a list ([])",
        "nodes[1]: expected an object, got a string",
        "nodes[2].key: expected a string, got a number (1)",
        "connections: expected a list, got an object",
    ]


def test_unknown_fields_suggest_the_right_one() -> None:
    found = problems_of(
        {
            "id": "x",
            "node": [],
            "nodes": [{"key": "start", "typ": "manual.trigger"}],
            "connections": [{"from": "start", "too": "start"}],
        }
    )
    assert (
        "node: unknown field (did you mean 'nodes'?); allowed fields are id, version, name, description, nodes, connections, settings, variables"
        in found
    )
    assert (
        "nodes[0].typ: unknown field (did you mean 'type'?); allowed fields are key, type, name, params, settings"
        in found
    )
    assert "nodes[0].type: required field is missing" in found
    assert (
        "connections[0].too: unknown field (did you mean 'to'?); allowed fields are from, to, from_port, to_port"
        in found
    )
    assert "connections[0].to: required field is missing" in found


def test_unknown_action_suggests_the_closest() -> None:
    found = problems_of(
        valid(
            nodes=[
                {"key": "start", "type": "manual.trigger"},
                {"key": "a", "type": "core.noop"},
                {"key": "check", "type": "logic.iff"},
            ]
        )
    )
    assert found == ["nodes[2].type: unknown action 'logic.iff' (did you mean 'logic.if'?)"]


def test_duplicate_node_keys_and_bad_keys() -> None:
    found = problems_of(
        valid(
            nodes=[
                {"key": "start", "type": "manual.trigger"},
                {"key": "a", "type": "core.noop"},
                {"key": "a", "type": "core.noop"},
                {"key": "has space", "type": "core.noop"},
            ]
        )
    )
    assert "nodes[2].key: duplicate node key 'a' (also nodes[1])" in found
    assert any(p.startswith("nodes[3].key: 'has space' is not a valid node key") for p in found)


def test_dangling_and_duplicate_connections() -> None:
    found = problems_of(
        valid(
            connections=[
                {"from": "start", "to": "a"},
                {"from": "start", "to": "a"},
                {"from": "strat", "to": "b"},
            ]
        )
    )
    assert found == [
        "connections[1]: duplicate of connections[0] (start.main -> a.main)",
        "connections[2].from: no node has key 'strat' (did you mean 'start'?)",
        "connections[2].to: no node has key 'b'",
    ]


def test_unknown_ports_list_the_ports_there_are() -> None:
    found = problems_of(
        workflow_dict(
            {
                "start": "manual.trigger",
                "check": ("logic.if", {"condition": True}),
                "a": "core.noop",
            },
            ["start -> check", "check.yes -> a", "check.true -> a.other", "a.error -> check"],
        )
    )
    assert found == [
        "connections[1].from_port: node 'check' (logic.if) has no output port 'yes'; its ports are true, false",
        "connections[2].to_port: node 'a' (core.noop) has no input port 'other'; its ports are main",
        "connections[3].from_port: node 'a' (core.noop) has no output port 'error'; its ports are main; "
        "set the node's settings.on_error to error_port to route its errors there",
    ]


def test_error_port_exists_with_on_error_error_port() -> None:
    workflow = prana.load_workflow(
        workflow_dict(
            {
                "start": "manual.trigger",
                "a": {"type": "core.noop", "settings": {"on_error": "error_port"}},
                "b": "core.noop",
            },
            ["start -> a", "a.error -> b"],
        ),
        actions=ACTIONS,
    )
    assert workflow.nodes[1].settings.on_error == "error_port"


def test_missing_trigger_and_connection_into_a_trigger() -> None:
    assert problems_of(workflow_dict({"a": "core.noop", "b": "core.noop"}, ["a -> b"])) == [
        "nodes: the workflow has no trigger node; add one such as {key: start, type: manual.trigger}"
    ]
    found = problems_of(
        workflow_dict({"start": "manual.trigger", "a": "core.noop"}, ["start -> a", "a -> start"])
    )
    assert found == [
        "connections[1].to: node 'start' is a trigger (manual.trigger); nothing can connect into a trigger"
    ]


def test_several_triggers_without_a_chosen_one() -> None:
    workflow = prana.load_workflow(
        workflow_dict(
            {"one": "manual.trigger", "two": "manual.trigger", "a": "core.noop"},
            ["one -> a", "two -> a"],
        ),
        actions=ACTIONS,
    )
    with pytest.raises(prana.WorkflowValidationError) as caught:
        prana.lowlevel.compile_workflow(workflow, ACTIONS)
    assert [str(p) for p in caught.value.problems] == [
        "trigger: the workflow has 2 triggers (one, two); choose one: engine.run(..., trigger='KEY'), "
        "'prana run --trigger KEY', or ?trigger=KEY in the URL of a daemon's start request"
    ]
    with pytest.raises(prana.WorkflowValidationError, match="'a' is not a trigger"):
        prana.lowlevel.compile_workflow(workflow, ACTIONS, trigger="a")
    assert prana.lowlevel.compile_workflow(workflow, ACTIONS, trigger="two").trigger == "two"


def test_parameters_are_checked_against_the_action() -> None:
    found = problems_of(
        workflow_dict(
            {
                "start": "manual.trigger",
                "check": ("logic.if", {"conditon": True}),
                "each": ("core.for_each", {"items": [1], "batch_size": "two"}),
                "log": ("core.log", {"message": "hi", "level": "loud"}),
                "route": (
                    "logic.switch",
                    {
                        "cases": [
                            {"port": "eu"},
                            {"port": "eu", "equals": 1},
                            {"port": "default", "in": 3},
                        ]
                    },
                ),
                "merge": ("data.merge", {"strategy": "zip"}),
            },
            [
                "start -> check",
                "check.true -> each",
                "each.loop -> log",
                "log -> each",
                "each.done -> route",
                "route.default -> merge",
            ],
        )
    )
    assert found == [
        "nodes[1].params.conditon: unknown parameter (did you mean 'condition'?); this action takes condition",
        "nodes[1].params.condition: required parameter is missing",
        "nodes[2].params.batch_size: expected an integer, got a string ('two')",
        "nodes[3].params.level: must be one of debug, info, warning, error, got 'loud'",
        "nodes[4].params.cases[0]: a case needs exactly one of equals, in, condition",
        "nodes[4].params.cases[1].port: port 'eu' is used by an earlier case",
        "nodes[4].params.cases[2].port: 'default' is reserved; choose another port name",
        "nodes[4].params.cases[2].in: must be a list of values",
        "nodes[5].params.strategy: must be one of append, merge, concat, combine_by_key, got 'zip'",
    ]


def test_templates_are_checked_when_loading() -> None:
    found = problems_of(
        workflow_dict(
            {
                "start": "manual.trigger",
                "a": (
                    "data.set",
                    {
                        "values": {
                            "x": "{{ input.x ",
                            "y": "{{ inupt.y }}",
                            "z": "{{ nodes.strat.output }}",
                        }
                    },
                ),
            },
            ["start -> a"],
        ),
        actions=None,
    )
    assert found == [
        "nodes[1].params.values.x: template syntax error: unexpected end of template, expected 'end of print statement'.",
        "nodes[1].params.values.y: unknown name 'inupt' in template (did you mean 'input'?); "
        "templates can use input, inputs, nodes, trigger, vars, env, execution, node, loop, run",
        "nodes[1].params.values.z: template refers to unknown node 'strat' (did you mean 'start'?)",
    ]


def test_loop_entered_at_two_nodes_is_refused() -> None:
    found = problems_of(
        workflow_dict(
            {
                "start": "manual.trigger",
                "config": "core.noop",
                "head": ("logic.if", {"condition": True}),
                "body": "core.noop",
            },
            [
                "start -> head",
                "start -> config",
                "config -> body",
                "head.true -> body",
                "body -> head",
            ],
        )
    )
    assert len(found) == 1
    assert found[0].startswith(
        "connections[2]: enters the loop through head, body at 'body', but the loop is also entered at 'head'"
    )
    assert "nodes.config.output" in found[0]


def test_settings_out_of_range() -> None:
    found = problems_of(
        valid(settings={"concurrency": 0, "max_iterations": -1, "on_error": "ignore"})
    )
    assert found == [
        "settings.on_error: must be one of stop, continue, error_port, got 'ignore'",
    ]
    found = problems_of(valid(settings={"concurrency": 0, "max_iterations": 0}))
    assert found == [
        "settings.max_iterations: must be at least 1, got 0",
        "settings.concurrency: must be between 1 and 10000, got 0",
    ]


def test_non_json_values_in_params_are_refused() -> None:
    found = problems_of(
        "id: x\nnodes:\n  - {key: start, type: manual.trigger, params: {tags: !!set {a: null}}}\n",
        actions=None,
    )
    assert found == [
        "nodes[0].params.tags: a builtins.set is not JSON data; convert it first (a "
        "datetime with .isoformat(), a UUID or a Decimal with str(), a set with list())"
    ]
    # NaN and the infinities have no JSON value, at any depth.
    found = problems_of(
        "id: x\nnodes:\n  - {key: start, type: manual.trigger, params: {a: [1, {b: .nan}]}}\n",
        actions=None,
    )
    assert found == ["nodes[0].params.a[1].b: nan has no JSON value; use null or a string instead"]


def test_yaml_aliases_that_expand_past_the_limit_are_refused_at_once() -> None:
    # About 1 KB of YAML that expands to 10**18 values (a "billion laughs").
    lines = ["id: x", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 18)]
    text = "\n".join(lines) + "\n"
    assert len(text) < 1500
    with pytest.raises(prana.WorkflowValidationError, match=r"expand to more than 1000000 values"):
        prana.load_workflow(text)
    with pytest.raises(prana.WorkflowValidationError, match=r"Limits\.yaml_values"):
        prana.load_workflow(
            "id: x\na: &a [1, 2, 3]\nb: [*a, *a]\n", limits=prana.Limits(yaml_values=5)
        )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_workflow_nested_too_deeply_is_refused_clearly(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"id": "x", "variables": {"v": ' + "[" * 10_000 + "]" * 10_000 + "}}")
    with pytest.raises(prana.WorkflowValidationError, match="nests too deeply"):
        prana.load_workflow(path)
    path.write_text('{"id": "x", "variables": {"v": ' + "[" * 150 + "]" * 150 + "}}")
    with pytest.raises(prana.WorkflowValidationError, match=r"Limits\.json_depth"):
        prana.load_workflow(path)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(prana.WorkflowValidationError) as caught:
        prana.load_workflow(
            {
                "id": "x",
                "nodes": [
                    {"key": "start", "type": "manual.trigger"},
                    {"key": "a", "type": "core.nop"},
                    {"key": "a", "type": "core.noop"},
                ],
                "connections": [{"from": "start", "to": "b"}],
                "extra": 1,
            },
            actions=ACTIONS,
        )
    error = caught.value
    assert len(error.problems) == 4
    assert str(error).splitlines()[0] == "4 problems:"


def test_a_part_that_cannot_be_read_hides_none_of_the_other_problems() -> None:
    # A node or connection with a malformed field is reported, and what can be read
    # of it is still checked: its duplicate key, an unknown action after it, at
    # their own paths. Nothing is reported twice.
    assert problems_of(
        {
            "id": "x",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "start", "type": "logic.if", "params": 5},
                "not a node",
                {"key": "b", "type": "no.such"},
                {"key": "c", "type": "core.noop", "settings": {"timeout": "abc"}},
                {"type": "core.noop"},
            ],
            "connections": [
                {"from": "start", "to": "zz", "from_port": 3},
                "start -> b",
                {"from": "start", "to": "b"},
                {"from": "start", "to": "c", "to_port": "side"},
            ],
        }
    ) == [
        "nodes[1].params: expected an object, got a number (5)",
        "nodes[2]: expected an object, got a string",
        "nodes[4].settings.timeout: 'abc' is not a duration; write it like 90s, 15m, 2h, 3d or 1h30m",
        "nodes[5].key: required field is missing",
        "connections[0].from_port: expected a string, got a number (3)",
        "connections[1]: expected an object, got a string",
        "nodes[1].key: duplicate node key 'start' (also nodes[0])",
        "nodes[3].type: unknown action 'no.such'",
        "connections[0].to: no node has key 'zz'",
        "connections[3].to_port: node 'c' (core.noop) has no input port 'side'; its ports are main",
    ]


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "missing.yaml") == [
        f"workflow file not found: '{tmp_path / 'missing.yaml'}'"
    ]
    assert problems_of(tmp_path) == [f"'{tmp_path}' is a directory, not a workflow file"]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00id")
    assert problems_of(binary)[0].startswith(f"'{binary}' is not UTF-8 text")


def test_error_names_its_source_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("id: x\nnodes: 3\n")
    with pytest.raises(prana.WorkflowValidationError) as caught:
        prana.load_workflow(path)
    assert str(caught.value).splitlines()[0] == f"1 problem in {path}:"


def test_a_workflow_round_trips_through_its_dict() -> None:
    workflow = prana.load_workflow(
        valid(settings={"concurrency": 3}, variables={"x": [1, {"y": None}]}), actions=ACTIONS
    )
    assert prana.load_workflow(prana.workflow_to_dict(workflow), actions=ACTIONS) == workflow


def test_a_workflow_does_not_change_when_its_source_dict_does() -> None:
    source = valid(variables={"items": [1, 2]})
    source["nodes"][1]["params"] = {"tags": ["a"]}
    workflow = prana.load_workflow(source, actions=ACTIONS)
    source["variables"]["items"].append(3)
    source["nodes"][1]["params"]["tags"].append("b")
    assert workflow.variables == {"items": [1, 2]}
    assert workflow.nodes[1].params == {"tags": ["a"]}


def test_retry_and_timeout_settings_are_checked() -> None:
    def load(settings: dict[str, object]) -> prana.Workflow:
        return prana.load_workflow(
            {
                "id": "w",
                "nodes": [
                    {"key": "start", "type": "manual.trigger"},
                    {"key": "call", "type": "core.noop", "settings": settings},
                ],
                "connections": [{"from": "start", "to": "call"}],
            }
        )

    loaded = load(
        {"timeout": "30s", "retry": {"max_attempts": 4, "delay": "500ms", "jitter": True}}
    )
    settings = loaded.nodes[1].settings
    assert settings.timeout == 30.0
    assert settings.retry == prana.RetrySettings(max_attempts=4, delay=0.5, jitter=0.5)
    with pytest.raises(prana.WorkflowValidationError) as caught:
        load({"timeout": "soon", "retry": {"backoff": "linear", "jitter": 2, "retry_on": [3]}})
    assert [str(problem) for problem in caught.value.problems] == [
        "nodes[1].settings.retry.backoff: must be fixed or exponential, got 'linear'",
        "nodes[1].settings.retry.jitter: must be a number from 0 to 1 (or true for 0.5), got 2",
        "nodes[1].settings.retry.retry_on: expected a list of error codes or exception class "
        "names, got [3]",
        "nodes[1].settings.timeout: 'soon' is not a duration; write it like 90s, 15m, 2h, 3d "
        "or 1h30m",
    ]
    with pytest.raises(prana.WorkflowValidationError) as caught:
        load({"timeout": 0, "retry": {"max_attempts": 0, "delay": "1m", "max_delay": "10s"}})
    assert [str(problem) for problem in caught.value.problems] == [
        "nodes[1].settings.timeout: must be longer than 0 seconds",
        "nodes[1].settings.retry.max_attempts: must be between 1 and 100, got 0",
        "nodes[1].settings.retry.max_delay: must not be shorter than delay (10.0 s < 60.0 s)",
    ]
