"""The prana command: what it prints and the exit codes it returns."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from prana.actors._cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORDER = str(EXAMPLES / "order_routing.yaml")


def test_a_command_leaves_the_logging_as_it_found_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An app or a test calling main goes on after it: no handler is left behind
    # (writing to a stream that may be closed by then), nor one more per command.
    hello = tmp_path / "hello.yaml"
    hello.write_text(
        "id: hello\nnodes:\n  - {key: start, type: manual.trigger}\n"
        "  - {key: say, type: core.log, params: {message: hi}}\n"
        "connections:\n  - {from: start, to: say}\n"
    )
    loggers = [logging.getLogger(), logging.getLogger("prana.workflow")]
    before = [(logger.handlers[:], logger.level) for logger in loggers]
    assert main(["run", str(hello), "--quiet"]) == 0
    assert main(["run", str(hello), "--quiet"]) == 0
    assert capsys.readouterr().err.count("log: hi") == 2  # shown while it ran
    assert [(logger.handlers[:], logger.level) for logger in loggers] == before


def test_run_completed_exits_0_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", ORDER, "--input", '{"amount": 1200, "country": "DE"}'])
    out, err = capsys.readouterr()
    assert code == 0
    assert "of order_routing v1: completed in" in out
    assert "Skipped: reject, us_tax, other_tax" in out
    assert '"total": 1428.0' in out
    timeline = [line.split()[1] for line in out.splitlines() if line[:6].strip().isdigit()]
    assert timeline == [
        "start",
        "valid",
        "region",
        "eu_tax",
        "taxed",
        "price",
        "big",
        "flag_review",
        "done",
        "log",
    ]
    # Not a terminal here: live progress is plain lines on stderr.
    assert "region               completed -> eu" in err
    assert "log: order for DE priced at 1428.0" in err


def test_run_failed_exits_1_and_shows_the_error(
    prana_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", ORDER, "--input", '{"amount": -5}', "--quiet", "--backend", "trio"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "failed in" in out
    assert (
        "Error [invalid_order] at node 'reject': order amount must be a positive number, got -5"
        in out
    )
    assert err == f"prana: using {prana_db}\n"  # nothing else: quiet


def test_run_json_prints_the_execution(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", ORDER, "--input", '{"amount": 10, "country": "US"}', "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["status"] == "completed"
    assert data["order"] == [
        "start",
        "valid",
        "region",
        "us_tax",
        "taxed",
        "price",
        "big",
        "done",
        "log",
    ]
    assert data["output"]["total"] == 10.7
    assert data["node_runs"][3]["node_key"] == "us_tax"


def test_input_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    order = tmp_path / "order.json"
    order.write_text('{"amount": 50, "country": "JP"}')
    assert main(["run", ORDER, "--input", f"@{order}", "--quiet"]) == 0
    assert '"region": "rest of world"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", ORDER, "--input", "{nope"], "--input is not valid JSON"),
        (
            ["run", ORDER, "--input", "@/no/such/file.json"],
            "--input: cannot read '/no/such/file.json'",
        ),
        (
            ["run", ORDER, "--actions", "no_such_module:actions"],
            "--actions: cannot import 'no_such_module'",
        ),
        (["run", ORDER, "--actions", "json:loads"], "should be an ActionRegistry, found function"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_argparse_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["launch", ORDER])
    assert caught.value.code == 2


def test_validate_lists_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\nnodes:\n  - {key: start, type: manual.trigger}\n  - {key: check, type: logic.iff}\n"
        "connections:\n  - {from: start, to: chek}\n"
    )
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"2 problems in {bad}:" in err
    assert "nodes[1].type: unknown action 'logic.iff' (did you mean 'logic.if'?)" in err
    assert "connections[0].to: no node has key 'chek' (did you mean 'check'?)" in err


def test_validate_a_good_workflow_exits_0_with_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", ORDER]) == 0
    assert "is valid: 13 nodes, 15 connections, trigger start" in capsys.readouterr().out
    island = tmp_path / "island.yaml"
    island.write_text(
        "id: i\nnodes:\n  - {key: start, type: manual.trigger}\n  - {key: lost, type: core.noop}\n"
    )
    assert main(["validate", str(island)]) == 0
    assert (
        "warning: nodes[1]: node 'lost' is never run: no trigger leads to it"
        in capsys.readouterr().out
    )


def test_a_workflow_with_several_triggers_needs_trigger_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(
        "id: two\nnodes:\n  - {key: a, type: manual.trigger}\n  - {key: b, type: manual.trigger}\n"
        "  - {key: work, type: core.noop}\nconnections:\n  - {from: a, to: work}\n  - {from: b, to: work}\n"
    )
    assert main(["run", str(two), "--quiet"]) == 1
    assert "--trigger KEY" in capsys.readouterr().err
    assert main(["run", str(two), "--quiet", "--trigger", "b", "--input", "1"]) == 0


def test_graph_prints_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLES / "paginate.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "flowchart LR"
    assert '    start(["start<br/><small>manual.trigger</small>"])' in out
    assert "    more -->|true| fetch" in out
    assert "    keep -.-> more" in out


def test_app_actions_load_from_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run", str(EXAMPLES / "checkout.yaml"), "--quiet",
            "--actions", f"{EXAMPLES / 'app.py'}:actions",
            "--input", '{"customer": "bo@example.com", "amount": 20}',
        ]
    )  # fmt: skip
    assert code == 0
    assert "Receipt ch_1: 20.0 charged" in capsys.readouterr().out


def test_console_script_and_module_entry_point(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("prana")
    for command in ([str(script)], [sys.executable, "-m", "prana"]):
        done = subprocess.run(
            [*command, "run", ORDER, "--input", '{"amount": 3, "country": "FR"}', "--quiet"],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert "completed" in done.stdout


APPROVAL = str(EXAMPLES / "approval.yaml")


def test_run_waits_then_list_show_and_resume_by_token(
    prana_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", APPROVAL, "--input", '{"amount": 5000}', "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "suspended (1 node waiting)" in out
    token = out.split("resume with: prana resume ")[1].split()[0]
    execution_id = out.split()[1]
    assert prana_db.exists()

    assert main(["list", "--status", "suspended"]) == 0
    listed = capsys.readouterr().out
    assert execution_id in listed
    assert f"approval token={token}" in listed

    assert main(["resume", token, "--data", '{"approved": true, "by": "ann"}']) == 0
    resumed = capsys.readouterr().out
    assert "completed in" in resumed
    assert '"approved_by": "ann"' in resumed

    assert main(["show", execution_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "completed"
    assert shown["order"] == ["start", "large", "approval", "decision", "pay"]
    assert shown["output"] == {"paid": 5000, "approved_by": "ann"}

    assert main(["resume", token, "--data", "{}"]) == 1
    assert "resume token not found (it expired or was used)" in capsys.readouterr().err


def test_resume_by_id_and_node(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", APPROVAL, "--input", '{"amount": 5000}', "--quiet", "--json"]) == 0
    execution_id = json.loads(capsys.readouterr().out)["id"]
    assert (
        main(
            [
                "resume",
                execution_id,
                "--node",
                "approval",
                "--data",
                '{"approved": false}',
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["output"] == {"paid": 0, "refused_by": "someone"}


def test_show_and_resume_mistakes(prana_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "nope"]) == 1
    assert f"there is no database at {prana_db} (from PRANA_DB)" in capsys.readouterr().err
    assert main(["list"]) == 1
    assert not prana_db.exists()  # list and show never create a file
    capsys.readouterr()
    assert main(["resume", "0" * 32]) == 1
    assert "no execution has id" in capsys.readouterr().err
    assert main(["show", "nope"]) == 1
    assert "no execution has id 'nope'" in capsys.readouterr().err
    assert main(["resume", "some-token", "--node", "x"]) == 2
    assert "--node goes with an execution id" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert capsys.readouterr().out == "No executions.\n"


def test_db_option_and_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    assert (
        main(
            [
                "run",
                ORDER,
                "--input",
                '{"amount": 5, "country": "US"}',
                "--quiet",
                "--db",
                str(other),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["list", "--db", str(other)]) == 0
    assert "order_routing v1  completed" in capsys.readouterr().out
    assert (
        main(["run", ORDER, "--input", '{"amount": 5, "country": "US"}', "--quiet", "--memory"])
        == 0
    )
    capsys.readouterr()
    assert main(["list"]) == 1  # nothing was kept, so no file was made
    assert "there is no database at" in capsys.readouterr().err


FULFIL = str(EXAMPLES / "fulfil_order.yaml")


def test_a_parent_waits_for_its_child_across_commands(
    prana_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", FULFIL, "--input", '{"amount": 5000}', "--quiet", "--json"]) == 0
    parent = json.loads(capsys.readouterr().out)
    assert parent["status"] == "suspended"
    (waiting,) = parent["suspensions"]
    assert (waiting["node_key"], waiting["kind"]) == ("pay", "workflow")
    assert main(["show", waiting["child_execution_id"], "--json"]) == 0
    child = json.loads(capsys.readouterr().out)
    token = child["suspensions"][0]["token"]

    assert main(["resume", token, "--data", '{"approved": true, "by": "ann"}', "--json"]) == 0
    capsys.readouterr()
    assert main(["show", parent["id"], "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["status"] == "completed"
    assert done["order"] == ["start", "pay", "paid", "ship"]
    assert done["output"] == {"shipped": True, "paid": 5000}


def test_a_parent_whose_child_needs_no_answer_completes_in_one_command(
    prana_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", FULFIL, "--input", '{"amount": 10}', "--quiet", "--json"]) == 0
    parent = json.loads(capsys.readouterr().out)
    assert parent["status"] == "completed"
    assert parent["output"] == {"shipped": True, "paid": 10}


REFUND = str(EXAMPLES / "refund.yaml")


def test_a_customer_s_second_refund_is_queued_and_starts_when_the_first_ends(
    prana_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann = '{"customer": "ann", "amount": 20}'
    assert main(["run", REFUND, "--input", ann, "--quiet", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["run", REFUND, "--input", '{"customer": "ann", "amount": 35}', "--quiet"]) == 0
    report = capsys.readouterr().out
    assert ": queued (not finished)" in report
    assert "Queued: it starts once an execution with concurrency key 'ann' ends" in report
    second_id = report.split()[1]
    assert main(["run", REFUND, "--input", '{"customer": "bob", "amount": 5}', "--quiet"]) == 0
    assert ": suspended" in capsys.readouterr().out  # another customer does not wait
    assert main(["list", "--status", "queued"]) == 0
    assert second_id in capsys.readouterr().out

    token = first["suspensions"][0]["token"]
    assert main(["resume", token, "--data", '{"approved": true}', "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == {"customer": "ann", "refunded": 20}
    assert main(["show", second_id, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["status"] == "suspended"  # started by the resume, waits for its reviewer
    assert second["suspensions"][0]["data"] == {"prompt": "Refund 35 to ann?"}


def test_the_report_of_a_parent_says_what_its_child_waits_for_and_how_to_answer(
    prana_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", FULFIL, "--input", '{"amount": 5000}', "--quiet"]) == 0
    out = capsys.readouterr().out
    waiting = out.split("Waiting:\n")[1].splitlines()
    assert waiting[0] == "  pay (workflow)"
    assert waiting[1].startswith("    waits for child execution ")
    assert waiting[1].endswith(" (approval), which waits at:")
    assert waiting[2].startswith("      approval (webhook): token wh_")
    token = waiting[2].split("token ")[1].split(";")[0]
    assert waiting[3].startswith('        data: {"prompt": "Pay 5000? (limit 1000)"')
    assert waiting[4] == f"        resume with: prana resume {token} --data '{{...}}'"
    assert f"prana resume {out.split()[1]}" not in out  # the parent cannot be answered

    # What it says works: the child completes, and the parent with it.
    assert main(["resume", token, "--data", '{"approved": true, "by": "ann"}']) == 0
    capsys.readouterr()
    assert main(["show", out.split()[1]]) == 0
    assert "of fulfil_order v1: completed in" in capsys.readouterr().out


def test_pause_resume_cancel_and_retry_from_the_command_line(
    prana_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", APPROVAL, "--input", '{"amount": 5000}', "--quiet", "--json"]) == 0
    execution_id = json.loads(capsys.readouterr().out)["id"]

    assert main(["pause", execution_id]) == 0
    assert f"Paused: nothing new runs until 'prana resume {execution_id}'" in (
        capsys.readouterr().out
    )
    assert main(["list", "--status", "paused"]) == 0
    assert execution_id in capsys.readouterr().out
    assert main(["explain", execution_id]) == 0  # why it does not move, in words
    why = sorted(capsys.readouterr().out.splitlines())
    assert why[0] == (
        f"it is paused: nothing new runs until it is unpaused (prana resume {execution_id}, "
        f"or POST /api/executions/{execution_id}/unpause)"
    )
    assert why[1].startswith("node 'approval' waits for data until ")
    assert main(["explain", "0" * 32]) == 1
    assert "no execution has id" in capsys.readouterr().err
    assert main(["resume", execution_id, "--json"]) == 0  # unpaused: waits again
    assert json.loads(capsys.readouterr().out)["status"] == "suspended"

    assert main(["cancel", execution_id, "--reason", "duplicate order", "--json"]) == 0
    cancelled = json.loads(capsys.readouterr().out)
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]["message"] == "duplicate order"
    assert main(["cancel", execution_id]) == 1
    assert "is cancelled; only an execution that has not ended" in capsys.readouterr().err
    assert main(["retry", execution_id]) == 1
    assert "only a failed execution can be retried" in capsys.readouterr().err

    assert main(["run", ORDER, "--input", '{"amount": -5}', "--quiet", "--json"]) == 1
    failed = json.loads(capsys.readouterr().out)
    assert main(["retry", failed["id"], "--json"]) == 1  # fails again: same input
    again = json.loads(capsys.readouterr().out)
    assert again["status"] == "failed"
    assert [(run["node_key"], run["attempt"]) for run in again["node_runs"]][-2:] == [
        ("reject", 1),
        ("reject", 2),
    ]


def test_input_nested_too_deeply_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    assert main(["run", ORDER, "--input", f"@{deep}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"prana: error: {deep} nests too deeply to read" in err
    assert "Traceback" not in err
    deep.write_text("[" * 150 + "]" * 150)
    assert main(["run", ORDER, "--input", f"@{deep}", "--quiet"]) == 2
    assert "nests deeper than 100 levels (Limits.json_depth)" in capsys.readouterr().err
    nan = tmp_path / "nan.json"
    nan.write_text('{"amount": NaN}')
    assert main(["run", ORDER, "--input", f"@{nan}", "--quiet"]) == 2
    assert ".amount: nan has no JSON value" in capsys.readouterr().err


def test_a_long_run_says_how_many_runs_it_does_not_show_and_show_lists_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text(
        "id: loop\nvariables: {i: 0}\nsettings: {max_iterations: 1600}\nnodes:\n"
        "  - {key: start, type: manual.trigger}\n"
        "  - {key: count, type: workflow.set_variables, params: {values: {i: '{{ vars.i + 1 }}'}}}\n"
        "  - {key: more, type: logic.if, params: {condition: '{{ vars.i < 1500 }}'}}\n"
        "connections:\n  - {from: start, to: count}\n  - {from: count, to: more}\n"
        "  - {from: more, from_port: 'true', to: count}\n"
    )
    assert main(["run", str(loop), "--quiet", "--all"]) == 0
    out = capsys.readouterr().out
    execution_id = out.split()[1]
    left_out = int(out.split("earlier runs not shown")[0].rsplit("(", 1)[1])
    assert f"prana show {execution_id} lists them all" in out
    timeline = [line for line in out.splitlines() if line[:6].strip().isdigit()]
    assert left_out > 0
    assert left_out + len(timeline) == 3001

    # Without --all, a long timeline shows its first and last runs.
    assert main(["show", execution_id]) == 0
    folded = capsys.readouterr().out
    rows = [line for line in folded.splitlines() if line[:6].strip().isdigit()]
    assert len(rows) == 30
    assert f"... 2971 runs not shown (prana show {execution_id} --all)" in folded

    assert main(["show", execution_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["runs_left_out"] == 0
    assert shown["order"] == ["start", *(["count", "more"] * 1500)]


def test_show_prints_what_a_waiting_node_asks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    form = tmp_path / "form.yaml"
    form.write_text(
        "id: form\nnodes:\n  - {key: start, type: manual.trigger}\n"
        "  - key: approve\n    type: wait.webhook\n"
        "    params: {data: {prompt: 'Pay {{ input.amount }}?', fields: [by]}}\n"
        "connections:\n  - {from: start, to: approve}\n"
    )
    assert main(["run", str(form), "--input", '{"amount": 120}', "--quiet"]) == 0
    execution_id = capsys.readouterr().out.split()[1]
    assert main(["show", execution_id]) == 0
    shown = capsys.readouterr().out
    assert '    data: {"prompt": "Pay 120?", "fields": ["by"]}' in shown.splitlines()
    assert main(["show", execution_id, "--json"]) == 0
    (waiting,) = json.loads(capsys.readouterr().out)["suspensions"]
    assert waiting["data"] == {"prompt": "Pay 120?", "fields": ["by"]}


def test_rerun_from_a_node_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", ORDER, "--input", '{"amount": -5}', "--quiet", "--json"]) == 1
    failed = json.loads(capsys.readouterr().out)
    order = '{"amount": 10, "country": "US"}'
    code = main(["rerun", failed["id"], "--from", "valid", "--input", order, "--json"])
    again = json.loads(capsys.readouterr().out)
    assert code == 0
    assert again["id"] != failed["id"]
    assert again["status"] == "completed"
    assert again["order"][:3] == ["start", "valid", "region"]
    assert again["output"]["total"] == 10.7
    assert main(["rerun", failed["id"], "--from", "nowhere"]) == 1
    assert "has no node 'nowhere'" in capsys.readouterr().err
