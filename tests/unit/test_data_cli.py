"""``stratos data``: records written for each task, and one-line errors (exit 1, no traceback) for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stratos_cli.cli import main
from stratos_train.tasks.mahjong import TILES, parse_hand, winning_tiles
from tests.conftest import REPO


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_mahjong_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mahjong.jsonl"
    assert main(["data", "mahjong-winning-tiles", "--n", "40", "--seed", "3", "--out", str(out)]) == 0
    records = _records(out)
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    for record in records:
        assert {"prompt", "reasoning", "answer", "problem", "target"} <= set(record)
        hand = parse_hand(record["problem"]["hand"])
        assert record["answer"] == [TILES[k] for k in winning_tiles(hand)]
        assert record["prompt"][-1] == {
            "role": "user",
            "content": f"Mahjong winning tiles of {record['problem']['hand']}?",
        }
        assert record["target"].endswith("Answer: " + " ".join(record["answer"]))
    assert "wrote 40 train example(s) of mahjong-winning-tiles" in capsys.readouterr().err
    # Same arguments, same file.
    again = tmp_path / "again.jsonl"
    assert main(["data", "mahjong-winning-tiles", "--n", "40", "--seed", "3", "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_mahjong_eval_split_full_prompt_and_few_shot(tmp_path: Path) -> None:
    out = tmp_path / "eval.jsonl"
    args = ["data", "mahjong-winning-tiles", "--split", "eval", "--n", "5", "--few-shot", "2", "--prompt-style", "full"]
    assert main([*args, "--trace", "candidates", "--out", str(out)]) == 0
    records = _records(out)
    assert all(r["split"] == "eval" for r in records)
    roles = [m["role"] for m in records[0]["prompt"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert any(line.endswith(": no") for r in records for line in r["reasoning"].splitlines())


def test_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "mahjong-winning-tiles", "--n", "3", "--out", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["task"] == "mahjong-winning-tiles"


def test_jsonl_records(tmp_path: Path) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"prompt": "2+2=", "completion": "4"}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["data", "jsonl", "--format", "prompt-completion", "--train", str(data), "--out", str(out)]) == 0
    (record,) = _records(out)
    assert record["answer"] == "4" and record["reasoning"] == "" and record["problem"] == {"prompt": "2+2="}


def test_gsm8k_records(tmp_path: Path, gsm8k_data_dir: Path) -> None:
    out = tmp_path / "gsm8k.jsonl"
    assert main(["data", "gsm8k", "--data", str(gsm8k_data_dir), "--split", "eval", "--n", "7", "--out", str(out)]) == 0
    records = _records(out)
    assert len(records) == 7 and all(r["id"].startswith("gsm8k-test-") for r in records)
    assert all(r["target"].endswith(f"#### {r['answer']}") and r["reasoning"] for r in records)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "mahjong", "--out", "-"], "unknown task 'mahjong'; did you mean 'mahjong-winning-tiles'?"),
        (["data", "gsm8k", "--out", "-"], "gsm8k needs --data DIR"),
        (["data", "gsm8k", "--data", "/no/such/dir", "--out", "-"], "GSM8K data directory /no/such/dir does not exist"),
        (["data", "mahjong-winning-tiles", "--data", "x", "--out", "-"], "--data does not apply to task"),
        (["data", "mahjong-winning-tiles", "--n", "0", "--out", "-"], "--n must be >= 1"),
        (["data", "mahjong-winning-tiles", "--few-shot", "-1", "--out", "-"], "--few-shot must be >= 0"),
        (["data", "mahjong-winning-tiles", "--n", "2", "--out", "/no/such/dir/x.jsonl"], "output directory"),
        (["data", "jsonl", "--train", "x.jsonl", "--out", "-"], "jsonl needs --format"),
        (["data", "jsonl", "--format", "chat", "--out", "-"], "jsonl task has no train file (--train PATH)"),
        (["data", "jsonl", "--format", "chat", "--train", "/no/file.jsonl", "--out", "-"], "/no/file.jsonl does not"),
        (
            ["data", "jsonl", "--format", "chat", "--metric", "regex-match", "--train", "a", "--out", "-"],
            "answer_regex",
        ),
    ],
)
def test_bad_input_exits_1_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1


def test_malformed_jsonl_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n", encoding="utf-8")
    assert main(["data", "jsonl", "--format", "chat", "--train", str(data), "--out", "-"]) == 1
    assert f"{data}:1: 'messages' must be a list of at least a user and an assistant" in capsys.readouterr().err


def test_few_shot_pool_too_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n", encoding="utf-8")
    argv = ["data", "jsonl", "--format", "prompt-completion", "--train", str(data), "--few-shot", "1", "--out", "-"]
    assert main(argv) == 1
    assert "need 1 few-shot examples, the pool has 0" in capsys.readouterr().err


def test_console_script_prints_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stratos_cli.cli", "data", "nonsense", "--out", "-"],
        capture_output=True,
        text=True,
        cwd=REPO / "functions",
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown task 'nonsense'") and "Traceback" not in result.stderr


def test_data_command_does_not_load_tasks_until_run() -> None:
    code = "import sys, stratos_cli.cli; stratos_cli.cli.build_parser(); print('stratos_train' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO / "functions")
    assert result.stdout.strip() == "False"
