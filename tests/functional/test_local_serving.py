"""The local endpoint server and registry on a tiny deployed model: the SageMaker hosting contract (/ping,
/invocations), the CLI, blue/green replacement and clean stops.

The reference output is computed in-process from the same model directory with the training container's
evaluation decoder (:func:`stratos_train.evaluate.generate`: chat template, greedy, stop ids), so the server
must answer exactly what the job's evaluation measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratos.errors import InputValidationError
from stratos_cli.cli import main
from stratos_cli.local.serving import (
    EndpointInfo,
    EndpointStartError,
    EndpointUnavailableError,
    InvocationError,
    ServerLimits,
    get_endpoint,
    invoke,
    list_endpoints,
    pid_alive,
    start_endpoint,
    stop_all,
    stop_endpoint,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)

PROMPT = "Which tiles complete 123m456p789s1122z?"
NEW_TOKENS = 6
NAME = "stratos-tiny-test"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private STRATOS_HOME; every endpoint left at the end is stopped."""
    path = tmp_path_factory.mktemp("stratos-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STRATOS_HOME", str(path))
        yield path
        stop_all()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``blue``: a tiny deployed student. ``green``: the same weights whose generation_config also lists the
    first token ``blue`` generates for PROMPT as a stop id (so ``green`` answers ""). ``reference``: blue's
    greedy completion of PROMPT, computed in-process."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stratos_train.data import render_prompt
    from stratos_train.evaluate import generate
    from stratos_train.export import save_deployable
    from stratos_train.models import build_tiny_model, train_tiny_tokenizer

    root = tmp_path_factory.mktemp("models")
    corpus = ["123m 456p 789s 1122z Answer: 1z 2z", "Which tiles complete the hand?", "4m: no\n5p: 456p"] * 30
    tokenizer = train_tiny_tokenizer(corpus)
    model = build_tiny_model(tokenizer, seed=3)
    blue = root / "blue"
    save_deployable(model.to(torch.bfloat16), tokenizer, blue, max_new_tokens=16, card={"title": "tiny"})

    loaded = AutoModelForCausalLM.from_pretrained(blue, dtype=torch.float32)
    loaded_tok = AutoTokenizer.from_pretrained(blue)
    messages = [{"role": "user", "content": PROMPT}]
    texts, _ = generate(loaded, loaded_tok, [messages], max_new_tokens=NEW_TOKENS)
    ids = loaded_tok(render_prompt(loaded_tok, messages), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        first = int(loaded(torch.tensor([ids])).logits[0, -1].argmax())
    assert texts[0], "the tiny model's greedy completion is empty: pick another seed for the test"

    green = root / "green"
    shutil.copytree(blue, green)
    config = json.loads((green / "generation_config.json").read_text())
    assert first not in config["eos_token_id"]
    config["eos_token_id"] = [*config["eos_token_id"], first]
    (green / "generation_config.json").write_text(json.dumps(config))
    return {"blue": blue, "green": green, "reference": texts[0]}


@pytest.fixture(scope="module")
def endpoint(home: Path, model_dirs: dict[str, Any]) -> EndpointInfo:
    return start_endpoint(NAME, model_dirs["blue"])


def post(url: str, raw: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{url}/invocations", data=raw, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def gone(pid: int) -> bool:
    """Independent of the module's own liveness check: no /proc entry (reaped), or not signalable."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not Path(f"/proc/{pid}").exists()


def test_ping_and_registry(endpoint: EndpointInfo, home: Path):
    assert endpoint.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ready", "endpoint": NAME, "running": 0, "queued": 0}
    [listed] = list_endpoints()
    assert (listed.name, listed.pid, listed.status) == (NAME, endpoint.pid, "InService")
    assert pid_alive(endpoint.pid)
    entry = json.loads((home / "endpoints" / f"{NAME}.json").read_text())
    assert {"name", "url", "port", "pid", "model_dir", "started_at", "status"} <= set(entry)
    assert Path(entry["log_path"]).is_file()


def test_invocations_answer_what_the_evaluation_decoder_generates(endpoint: EndpointInfo, model_dirs: dict[str, Any]):
    reference = model_dirs["reference"]
    params = {"max_new_tokens": NEW_TOKENS}
    turns = [{"role": "user", "content": PROMPT}]
    for doc in (
        {"inputs": PROMPT, "parameters": params},
        {"inputs": turns, "parameters": params},
        {"messages": turns, "parameters": params},
    ):
        status, answer = post(endpoint.url, json.dumps(doc).encode())
        assert status == 200
        assert answer == [{"generated_text": reference}]
    assert invoke(NAME, {"inputs": PROMPT, "parameters": params}) == [{"generated_text": reference}]
    # a stop string cuts the text before it
    cut = invoke(NAME, {"inputs": PROMPT, "parameters": {**params, "stop": [reference[-1]]}})
    assert cut[0]["generated_text"] == reference[: reference.index(reference[-1])]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "<body>"),
        (b'{"parameters": {}}', "inputs"),
        (b'{"inputs": "x", "parameters": {"max_new_tokens": "ten"}}', "parameters.max_new_tokens"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
        (b'{"inputs": "x", "parameters": {"max_new_tokens": 4096}}', "inputs"),  # over the 1024-token context
    ],
)
def test_bad_requests_are_400_naming_the_field(endpoint: EndpointInfo, raw: bytes, field: str):
    status, answer = post(endpoint.url, raw)
    assert status == 400
    assert answer["field"] == field
    assert answer["error"].startswith(f"{field}: ")
    assert "Traceback" not in json.dumps(answer)


def test_wrong_content_type_and_paths(endpoint: EndpointInfo):
    status, answer = post(endpoint.url, b"inputs=x", "application/x-www-form-urlencoded")
    assert status == 415 and "application/json" in answer["error"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{endpoint.url}/nothing", timeout=5)
    assert info.value.code == 404
    with pytest.raises(InvocationError) as error:
        invoke(NAME, {"inputs": "x", "parameters": {"top_k": -1}})
    assert (error.value.status, error.value.field) == (400, "parameters.top_k")


def test_failed_replacement_keeps_the_old_server(endpoint: EndpointInfo, model_dirs: dict[str, Any], tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(model_dirs["blue"], broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(EndpointStartError, match="exited with code 1") as info:
        start_endpoint(NAME, broken, timeout_s=120)
    assert "config.json" in str(info.value) or "JSON" in str(info.value)  # the log tail says why
    current = get_endpoint(NAME)
    assert current.pid == endpoint.pid and pid_alive(endpoint.pid)
    assert invoke(NAME, {"inputs": PROMPT, "parameters": {"max_new_tokens": NEW_TOKENS}}) == [
        {"generated_text": model_dirs["reference"]}
    ]

    (broken / "model.safetensors").unlink()
    with pytest.raises(InputValidationError, match="model_dir: lacks model.safetensors"):
        start_endpoint(NAME, broken)
    with pytest.raises(InputValidationError, match="endpoint_name"):
        start_endpoint("bad name!", model_dirs["blue"])


def test_cli_invoke_and_endpoints(
    endpoint: EndpointInfo, model_dirs: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    reference = model_dirs["reference"]
    assert main(["invoke", NAME, PROMPT, "--max-new-tokens", str(NEW_TOKENS)]) == 0
    assert capsys.readouterr().out == reference + "\n"

    body = json.dumps({"messages": [{"role": "user", "content": PROMPT}], "parameters": {"max_new_tokens": NEW_TOKENS}})
    assert main(["invoke", NAME, "--json", body, "--raw"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"generated_text": reference}]

    assert main(["invoke", "no-such-endpoint", PROMPT]) == 1
    assert "no local endpoint named 'no-such-endpoint'" in capsys.readouterr().err
    assert main(["invoke", NAME, "--json", "{oops"]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["invoke", NAME, "--json", '{"inputs": 3}']) == 1
    assert "HTTP 400: inputs:" in capsys.readouterr().err

    assert main(["endpoints"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and endpoint.url in out and str(endpoint.pid) in out and "InService" in out
    assert main(["endpoints", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == [NAME]


def test_cli_ask_prints_each_answer_beside_the_verifiers(endpoint: EndpointInfo, capsys: pytest.CaptureFixture[str]):
    """``stratos ask`` (the demo's last step): the set's first N problems in order, each with the answer the
    endpoint gave, the verifier's answer and the verdict the task's scorer gives that answer."""
    from stratos_train.tasks import get_task

    task = get_task("mahjong-winning-tiles")
    examples = task.examples("eval", 8, 1)[:3]
    expected = []
    for example in examples:
        body = {"messages": task.prompt(example), "parameters": {"max_new_tokens": NEW_TOKENS}}
        text = invoke(NAME, body)[0]["generated_text"]
        expected.append(("right" if task.score(example, text).correct else "wrong", " ".join(example.answer)))
    args = ["ask", NAME, "--count", "3", "--eval-size", "8", "--seed", "1", "--max-new-tokens", str(NEW_TOKENS)]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("│ 1 ", "│ 2 ", "│ 3 "))]
    assert len(rows) == 3
    for row, (verdict, reference) in zip(rows, expected, strict=True):
        assert verdict in row and reference in row
        assert examples[rows.index(row)].problem["hand"] in row
    rights = sum(v == "right" for v, _ in expected)
    assert out.strip().endswith(f"{rights} of 3 right")
    assert main(["ask", NAME, "--set", "nope", "--count", "1", "--eval-size", "2"]) == 1
    assert "held-out sets eval, random-tenpai" in capsys.readouterr().err
    assert main(["ask", NAME, "--count", "9", "--eval-size", "8"]) == 2


def test_cli_ask_reads_the_task_from_the_spec(endpoint: EndpointInfo, capsys: pytest.CaptureFixture[str]):
    """``stratos ask --spec SPEC --data DIR`` builds the held-out set as the training job does from that spec:
    here the shipped word-forms JSONL example (the user's files, found in DIR by their base names)."""
    from stratos_train.tasks import get_task

    spec, data = REPO / "events/specs/word-forms-local.json", REPO / "events/data/word-forms"
    task = get_task(
        "jsonl", format="chat", metric="exact-match", train=str(data / "train.jsonl"), eval=str(data / "eval.jsonl")
    )
    examples = task.examples("eval")[:2]
    args = ["ask", NAME, "--spec", str(spec), "--data", str(data), "--count", "2", "--max-new-tokens", "8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("│ 1 ", "│ 2 "))]
    assert len(rows) == 2
    for row, example in zip(rows, examples, strict=True):
        # The question (not the worked example before it) and the reference as the scorer reads it.
        question = example.problem["messages"][-1]["content"]
        assert question[:30] in row and f"│ {task.extract_answer(example.answer)} " in row
        assert "right" in row or "wrong" in row
    assert main(["ask", NAME, "--spec", str(spec), "--count", "1"]) == 2
    assert "pass --data DIR" in capsys.readouterr().err
    assert main(["ask", NAME, "--spec", str(spec), "--data", str(data), "--seed", "3"]) == 2
    assert "drop --seed" in capsys.readouterr().err


def test_stale_entry_is_marked_refused_and_removable(
    endpoint: EndpointInfo, home: Path, capsys: pytest.CaptureFixture[str]
):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    ghost = EndpointInfo(
        "ghost", "http://127.0.0.1:9", 9, dead_pid, str(home), "2026-01-01T00:00:00+00:00", "InService", ""
    )
    (home / "endpoints" / "ghost.json").write_text(json.dumps(ghost.as_dict()))

    statuses = {e.name: e.status for e in list_endpoints()}
    assert statuses == {"ghost": "Stale", NAME: "InService"}
    assert get_endpoint("ghost").status == "Stale"  # written back
    with pytest.raises(EndpointUnavailableError, match="not running"):
        invoke("ghost", PROMPT)
    assert main(["endpoints", "--stop", "ghost"]) == 0
    assert "stopped ghost" in capsys.readouterr().out
    assert main(["endpoints", "--stop", "ghost"]) == 1
    assert "no local endpoint named 'ghost'" in capsys.readouterr().err
    assert [e.name for e in list_endpoints()] == [NAME]


def test_blue_green_replacement_keeps_serving_then_stop_leaves_no_process(home: Path, model_dirs: dict[str, Any]):
    name = "stratos-bluegreen-test"
    blue = start_endpoint(name, model_dirs["blue"], limits=ServerLimits(workers=1, queue_depth=3))
    assert "(1 workers, queue 3, 256 connections, request timeout 20 s)" in Path(blue.log_path).read_text()
    params = {"max_new_tokens": NEW_TOKENS}
    assert invoke(name, {"inputs": PROMPT, "parameters": params})[0]["generated_text"] == model_dirs["reference"]

    answers: list[str] = []
    failures: list[BaseException] = []
    replaced = threading.Event()

    def client() -> None:  # keeps invoking by name while the endpoint is replaced
        while not replaced.is_set():
            try:
                answers.append(invoke(name, {"inputs": PROMPT, "parameters": params})[0]["generated_text"])
            except Exception as exc:
                failures.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        green = start_endpoint(name, model_dirs["green"])
    finally:
        replaced.set()
        thread.join(timeout=60)
    assert failures == []
    assert answers and set(answers) <= {model_dirs["reference"], ""}
    assert green.pid != blue.pid and green.port != blue.port
    assert gone(blue.pid) and not pid_alive(blue.pid)
    # green stops at the extra id listed in its generation_config.json: every listed id is a stop id
    assert invoke(name, {"inputs": PROMPT, "parameters": params}) == [{"generated_text": ""}]
    assert get_endpoint(name).pid == green.pid

    stopped = stop_endpoint(name)
    assert stopped.status == "Stopped" and stopped.pid == green.pid
    assert gone(green.pid)
    assert name not in {e.name for e in list_endpoints()}
    assert Path(green.log_path).read_text().strip().endswith("stopped")
