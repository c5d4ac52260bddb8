"""``prana serve``'s options as an operator meets them: --check, tokens, and what it
refuses."""

from __future__ import annotations

import socket
import sqlite3
import sys
from pathlib import Path

import pytest

import prana
from prana.actors._cli import main
from prana.actors._gc import DEFAULT_THRESHOLDS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_check_validates_the_configuration_and_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "flows.db"
    workflow = str(EXAMPLES / "approval.yaml")
    code = main(["serve", "--db", str(db), "--workflows", workflow, "--check"])
    _, err = capsys.readouterr()
    assert code == 0
    assert f"{db} does not exist yet: it is created on start" in err
    assert "the configuration is valid (1 workflows)" in err
    assert not db.exists()  # the check changes nothing
    as_url = main(["serve", "--db", f"sqlite:///{db}", "--check"])
    _, err = capsys.readouterr()
    assert as_url == 0
    assert f"{db} does not exist yet" in err


def test_check_refuses_a_database_prana_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE customers (name TEXT)")
    connection.close()
    before = other.read_bytes()
    code = main(["serve", "--db", str(other), "--check"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "is a SQLite database of another program (tables: customers)" in err
    assert other.read_bytes() == before


def test_an_invalid_workflow_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(
        "id: bad\nversion: 1\nnodes:\n  - {key: start, type: manual.trigger}\n"
        "  - {key: x, type: no.such}\nconnections:\n  - {from: start, to: x}\n"
    )
    code = main(["serve", "--workflows", str(tmp_path), "--check"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "nodes[1].type: unknown action 'no.such'" in err
    assert f"--workflows {tmp_path} loads every .yaml, .yml and .json file in it" in err


def test_the_examples_folder_is_served_whole_with_the_examples_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflows = sorted(
        path for path in EXAMPLES.iterdir() if path.suffix in (".yaml", ".yml", ".json")
    )
    code = main(
        ["serve", "--db", str(tmp_path / "flows.db"), "--workflows", str(EXAMPLES),
         "--actions", f"{EXAMPLES / 'app.py'}:actions", "--check"]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    assert f"the configuration is valid ({len(workflows)} workflows)" in err


def test_serving_beyond_this_machine_needs_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRANA_TOKENS", raising=False)
    refused = main(["serve", "--host", "0.0.0.0", "--check"])
    _, err = capsys.readouterr()
    tokens = tmp_path / "tokens"
    tokens.write_text("# the operators' tokens\nfirst-token\n\n")
    allowed = main(["serve", "--host", "0.0.0.0", "--token-file", str(tokens), "--check"])
    missing = main(["serve", "--token-file", str(tmp_path / "nothing"), "--check"])
    _, missing_err = capsys.readouterr()
    assert refused == 2
    assert "serves the API beyond this machine without a token" in err
    assert allowed == 0
    assert missing == 2
    assert "--token-file: cannot read" in missing_err


def test_a_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--workflows", str(tmp_path / "nowhere"), "--check"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "no such file or folder" in err


def test_json_logs_are_one_object_per_line_with_the_traceback() -> None:
    import json
    import logging

    from prana.server._daemon import JSONLines

    try:
        raise ValueError("the store is full")
    except ValueError:
        record = logging.LogRecord(
            "prana.server", logging.ERROR, __file__, 1, "cannot save %s", ("e1",), sys.exc_info()
        )
    line = JSONLines().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "error",
        "prana.server",
        "cannot save e1",
    )
    assert "ValueError: the store is full" in entry["error"]
    assert "daemon" not in entry
    # One of the daemons of --processes names itself on every line.
    assert json.loads(JSONLines(daemon="2").format(record))["daemon"] == "2"


async def test_a_log_nodes_line_names_its_execution_workflow_and_node() -> None:
    import json
    import logging

    from prana.server._daemon import JSONLines, TextLines

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    workflow = prana.load_workflow(
        {
            "id": "hello",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "say", "type": "core.log", "params": {"message": "hi {{ input.name }}"}},
            ],
            "connections": [{"from": "start", "to": "say"}],
        }
    )
    keep = Keep()
    logger = logging.getLogger("prana.workflow")
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)  # as the daemon's logging sets it
    try:
        async with prana.Engine() as engine:
            execution = await engine.run(workflow, {"name": "Ann"})
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    (record,) = records
    entry = json.loads(JSONLines().format(record))
    assert (entry["message"], entry["execution_id"], entry["workflow_id"], entry["node_key"]) == (
        "hi Ann",
        execution.id,
        "hello",
        "say",
    )
    line = TextLines("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == (
        f"INFO prana.workflow: hi Ann (execution_id={execution.id} workflow_id=hello node_key=say)"
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import prana

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"prana {prana.__version__}"


def test_webhook_secrets_and_the_signing_key_come_from_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, key = tmp_path / "secrets", tmp_path / "key"
    secrets.write_text("# path secret\n/orders s3cret\n")
    key.write_text("k3y\n")
    good = main(["serve", "--webhook-secrets", str(secrets), "--signing-key-file", str(key),
                 "--check"])  # fmt: skip
    secrets.write_text("orders\n")
    bad = main(["serve", "--webhook-secrets", str(secrets), "--check"])
    _, err = capsys.readouterr()
    assert (good, bad) == (0, 2)
    assert "'orders' should be a webhook path, a space, its secret" in err


@pytest.mark.parametrize(("options", "tuned"), [((), True), (("--default-gc",), False)])
def test_the_daemon_tunes_its_process_s_garbage_collector_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...], tuned: bool
) -> None:
    import gc

    import prana.actors._cli as cli

    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(cli, "_run", lambda main, backend: seen.append(gc.get_threshold()))
    before = gc.get_threshold()
    try:
        assert main(["serve", "--db", str(tmp_path / "d.db"), *options]) == 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    assert seen == [DEFAULT_THRESHOLDS if tuned else before]


def test_several_processes_need_a_store_they_can_share(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--db", "memory://", "--processes", "2"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "prana serve keeps executions in SQLite or PostgreSQL, not memory://" in err


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_port_in_use_is_refused_with_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], processes: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        code = main(
            ["serve", "--db", str(tmp_path / "d.db"), "--port", port, "--processes", processes,
             "--default-gc"]  # the collector of the tests' process stays as it is
        )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 1
    assert f"prana: cannot listen on 127.0.0.1:{port}: Address already in use" in err
    assert "give another port (--port), or stop what listens there" in err
    assert "Traceback" not in err
