"""``stratos invoke`` and ``stratos endpoints``: query and manage the local endpoints.

* ``stratos invoke ENDPOINT "prompt" [--max-new-tokens N] [--temperature T] [--raw]`` sends the prompt as one
  user message (the server applies the model's chat template) and prints the generated text;
  ``--json '{...}'`` or ``--json-file FILE`` sends a body as is (``{"inputs": ..., "parameters": ...}`` or
  ``{"messages": [...]}``); ``--raw`` prints the server's JSON answer.
* ``stratos ask ENDPOINT --spec SPEC [--data DIR] [--set eval|random-tenpai] [--count N]`` asks the endpoint
  the first ``N`` problems of a held-out set, built exactly as the training job builds it (the spec's task,
  seed and size, its data files from ``DIR`` as ``stratos run --data`` stages them; in the set's own order:
  nothing is picked), and prints each answer beside the reference answer with right/wrong, then the tally.
  Without a spec, ``--task TASK [--seed S] [--eval-size M]`` name a built-in task and its set;
* ``stratos endpoints`` lists the registered endpoints (name, URL, model, pid, status) as a table;
  ``--stop NAME`` / ``--stop-all`` stops them; ``--json`` prints the list as JSON.
* ``stratos loadtest ENDPOINT [--spec SPEC | --concurrency N --prompt-tokens N --output-tokens N] [--requests N]
  [--max-seconds S] [--aws [--region R]] [--json]`` runs the pipeline's post-deploy load test
  (:mod:`stratos.loadtest`: a warm-up, then a bounded closed loop) against a local endpoint, or with ``--aws``
  a SageMaker endpoint through ``sagemaker-runtime`` (the AWS credentials in the environment), and prints p50,
  p90, tokens/s and errors; with ``--spec`` also the verdict against ``latency.p50_ms`` x 1.10 (exit 1 when
  missed), exactly as CheckLatency judges a deployment.

Exit codes: 0 success; 1 unknown or unreachable endpoint, rejected request, unreadable JSON or (loadtest with a
spec) a missed latency limit (one line on stderr saying which); 2 usage. The server module and rich are imported
inside the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``invoke`` and ``endpoints`` subcommands to the ``stratos`` parser."""
    invoke = subparsers.add_parser(
        "invoke", help="query a local endpoint (POST /invocations) and print the generated text"
    )
    invoke.add_argument("endpoint", metavar="ENDPOINT", help="endpoint name (see `stratos endpoints`)")
    invoke.add_argument("prompt", nargs="?", metavar="PROMPT", help="prompt text, sent as one user message")
    body = invoke.add_mutually_exclusive_group()
    body.add_argument("--json", dest="json_body", metavar="JSON", help="request body as JSON text, sent as is")
    body.add_argument("--json-file", type=Path, metavar="FILE", help="request body from a JSON file, sent as is")
    invoke.add_argument("--max-new-tokens", type=int, metavar="N", help="tokens to generate at most")
    invoke.add_argument("--temperature", type=float, metavar="T", help="sampling temperature (0 or unset = greedy)")
    invoke.add_argument("--raw", action="store_true", help="print the server's JSON answer instead of the text")
    invoke.add_argument("--timeout", type=float, default=600.0, metavar="S", help="HTTP timeout, s (default 600)")
    invoke.set_defaults(func=_cmd_invoke)

    ask = subparsers.add_parser(
        "ask", help="ask an endpoint held-out problems; print its answers beside the reference answers (right/wrong)"
    )
    ask.add_argument("endpoint", metavar="ENDPOINT", help="endpoint name (see `stratos endpoints`)")
    ask.add_argument("--spec", type=Path, metavar="SPEC", help="the task spec the endpoint was trained for")
    ask.add_argument("--task", help="without --spec: a built-in task name (default mahjong-winning-tiles)")
    ask.add_argument("--set", dest="eval_set", default="eval", help="held-out set: eval, or a task's extra set")
    ask.add_argument("--count", type=int, default=6, metavar="N", help="problems to ask (the set's first N)")
    ask.add_argument("--seed", type=int, help="without --spec: the data seed (default 0)")
    ask.add_argument("--eval-size", type=int, metavar="M", help="without --spec: the eval_size (default 24)")
    ask.add_argument("--data", type=Path, help="the data files (gsm8k's folder; a JSONL spec's files by base name)")
    ask.add_argument("--max-new-tokens", type=int, default=320, metavar="N", help="budget per answer")
    ask.add_argument("--timeout", type=float, default=600.0, metavar="S", help="HTTP timeout per problem, s")
    ask.set_defaults(func=_cmd_ask)

    endpoints = subparsers.add_parser("endpoints", help="list local endpoints; --stop NAME / --stop-all stops them")
    stop = endpoints.add_mutually_exclusive_group()
    stop.add_argument("--stop", metavar="NAME", action="append", default=[], help="stop this endpoint (repeatable)")
    stop.add_argument("--stop-all", action="store_true", help="stop every local endpoint")
    endpoints.add_argument("--json", action="store_true", help="print the list as JSON")
    endpoints.set_defaults(func=_cmd_endpoints)

    load = subparsers.add_parser(
        "loadtest",
        help="bounded load test of an endpoint at a spec's latency shape: p50, p90, tokens/s (the post-deploy check)",
    )
    load.add_argument("endpoint", metavar="ENDPOINT", help="endpoint name (local, or a SageMaker one with --aws)")
    load.add_argument("--spec", type=Path, metavar="SPEC", help="take the shape and the p50 limit from this spec")
    load.add_argument("--concurrency", type=int, metavar="N", help="clients sending at once (default 1)")
    load.add_argument("--prompt-tokens", type=int, metavar="N", help="prompt length, tokens (default 512)")
    load.add_argument("--output-tokens", type=int, metavar="N", help="max_new_tokens per request (default 128)")
    load.add_argument(
        "--requests", type=int, metavar="N", help="measured requests at most (default 4 per client, >= 16)"
    )
    load.add_argument("--max-seconds", type=float, metavar="S", help="stop issuing requests after S s (default 120)")
    load.add_argument("--aws", action="store_true", help="a SageMaker endpoint, through sagemaker-runtime")
    load.add_argument("--region", help="with --aws: the endpoint's region (default: the AWS configuration's)")
    load.add_argument("--json", action="store_true", help="print the result as one JSON object")
    load.set_defaults(func=_cmd_loadtest)


def _body(args: argparse.Namespace) -> dict[str, Any] | None:
    """The request body from the arguments; ``None`` (with a message printed) when unusable."""
    if args.json_body is not None or args.json_file is not None:
        if args.prompt is not None:
            print("give PROMPT or --json/--json-file, not both", file=sys.stderr)
            return None
        source = "--json" if args.json_body is not None else str(args.json_file)
        try:
            text = args.json_body if args.json_body is not None else args.json_file.read_text(encoding="utf-8")
            doc = json.loads(text)
        except OSError as exc:
            print(f"{source}: cannot read: {exc.strerror}", file=sys.stderr)
            return None
        except json.JSONDecodeError as exc:
            print(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", file=sys.stderr)
            return None
        if not isinstance(doc, dict):
            print(f"{source}: the body must be a JSON object", file=sys.stderr)
            return None
        body: dict[str, Any] = doc
    elif args.prompt is not None:
        body = {"inputs": args.prompt}
    else:
        print("give a PROMPT, --json or --json-file", file=sys.stderr)
        return None
    params = {
        k: v for k, v in (("max_new_tokens", args.max_new_tokens), ("temperature", args.temperature)) if v is not None
    }
    if params:
        existing = body.get("parameters")
        body["parameters"] = {**(existing if isinstance(existing, dict) else {}), **params}
    return body


def _cmd_invoke(args: argparse.Namespace) -> int:
    from stratos_cli.local.serving import invoke

    body = _body(args)
    if body is None:
        return 1
    answer = invoke(args.endpoint, body, timeout_s=args.timeout)
    if args.raw:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print("\n".join(str(item["generated_text"]) for item in answer))
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    import importlib

    from stratos_cli.local.serving import invoke

    if args.count < 1:
        print(f"--count must be at least 1, got {args.count}", file=sys.stderr)
        return 2
    settings = _ask_settings(args)
    if settings is None:
        return 2
    name, options, eval_size, seed = settings
    tasks = importlib.import_module("stratos_train.tasks")  # the container's task code, only when asked
    try:
        task = tasks.get_task(name, **options)
        if args.eval_set == "eval":
            examples = task.examples("eval", eval_size, seed)
        else:
            extra = task.extra_eval_sets(eval_size, seed)
            if args.eval_set not in extra:
                known = ", ".join(["eval", *extra])
                print(f"--set {args.eval_set!r}: task {name} has the held-out sets {known}", file=sys.stderr)
                return 1
            examples = extra[args.eval_set]
    except tasks.TaskError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if len(examples) < args.count:
        print(f"--count {args.count}: the {args.eval_set} set has {len(examples)} problems", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    # A subsample's seed says which problems these are; a whole file (user JSONL) is asked in its own order.
    drawn = "" if eval_size is None else f" (seed {seed})"
    title = f"{args.endpoint}: the first {args.count} {args.eval_set} problems{drawn}"
    table = Table(title=title)
    for column in ("#", "problem", "student's answer", "reference answer", "verdict"):
        table.add_column(column, overflow="fold")
    right = 0
    for index, example in enumerate(examples[: args.count], start=1):
        body = {"messages": task.prompt(example), "parameters": {"max_new_tokens": args.max_new_tokens}}
        text = str(invoke(args.endpoint, body, timeout_s=args.timeout)[0]["generated_text"])
        score = task.score(example, text)
        right += score.correct
        given = score.predicted
        shown = "(no answer)" if given is None else (" ".join(given) if isinstance(given, tuple) else str(given))
        reference = _shown_reference(task, example.answer)
        problem = _shown_problem(example.problem)
        verdict = "[green]right[/]" if score.correct else "[red]wrong[/]"
        table.add_row(str(index), problem[:60], shown or "none", reference or "none", verdict)
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    print(f"{right} of {args.count} right")
    return 0


def _shown_problem(problem: dict[str, Any]) -> str:
    """A problem on one line: a chat record's last user turn (its earlier turns are worked examples), else the
    problem's fields."""
    messages = problem.get("messages")
    if isinstance(messages, list):
        users = [str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return users[-1]
    return " ".join(str(v) for v in problem.values())


def _shown_reference(task: Any, answer: Any) -> str:
    """The reference as the scorer reads it (``Answer: kicked`` -> ``kicked``; a tile tuple joined)."""
    if isinstance(answer, tuple):
        return " ".join(answer)
    extracted = task.extract_answer(str(answer))
    return str(answer) if extracted is None else str(extracted)


def _ask_settings(args: argparse.Namespace) -> tuple[str, dict[str, str], int | None, int] | None:
    """(task name, task options, eval size, seed) from ``--spec`` (as the training job reads the spec) or from
    ``--task``/``--eval-size``/``--seed``; ``None`` with a message printed when the arguments do not fit."""
    data = {"data_dir": str(args.data)} if args.data else {}
    if args.spec is None:
        return (
            args.task or "mahjong-winning-tiles",
            data,
            24 if args.eval_size is None else args.eval_size,
            args.seed or 0,
        )
    given = [
        flag
        for flag, value in (("--task", args.task), ("--eval-size", args.eval_size), ("--seed", args.seed))
        if value is not None
    ]
    if given:
        print(f"--spec sets the task, its eval size and seed; drop {', '.join(given)}", file=sys.stderr)
        return None
    from stratos.errors import InputValidationError
    from stratos.pipeline.training import task_settings
    from stratos.spec import JsonlData, parse_spec

    try:
        spec = parse_spec(args.spec.read_bytes(), str(args.spec))
    except OSError as exc:
        print(f"{args.spec}: cannot read: {exc.strerror}", file=sys.stderr)
        return None
    except InputValidationError as exc:
        print(f"{args.spec}: INVALID: " + "; ".join(str(err) for err in exc.errors), file=sys.stderr)
        return None
    settings = task_settings(spec)
    options = dict(settings.options)
    if isinstance(spec.data, JsonlData):
        if args.data is None:
            print(f"{args.spec} reads the user's JSONL files: pass --data DIR (as for stratos run)", file=sys.stderr)
            return None
        from stratos_cli.local.run import local_data_file

        for key, uri in (("train", spec.data.train_uri), ("eval", spec.data.eval_uri)):
            options[key] = str(local_data_file(args.data, uri))
    else:
        options.update(data)
    return settings.task, options, settings.eval_size, settings.seed


def _cmd_endpoints(args: argparse.Namespace) -> int:
    from stratos_cli.local.serving import list_endpoints, state_dir, stop_all, stop_endpoint

    if args.stop_all or args.stop:
        stopped = stop_all() if args.stop_all else [stop_endpoint(name) for name in args.stop]
        for info in stopped:
            print(f"stopped {info.name} (pid {info.pid}, {info.url})")
        if not stopped:
            print("no local endpoints to stop")
        return 0
    infos = list_endpoints()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no local endpoints (registry {state_dir()})")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Local endpoints ({state_dir()})")
    for column in ("name", "url", "model", "pid", "status", "started (UTC)"):
        table.add_column(column, justify="right" if column == "pid" else "left", overflow="fold")
    colours = {"InService": "green", "Loading": "yellow"}
    for i in infos:
        status = f"[{colours.get(i.status, 'red')}]{i.status}[/]"
        table.add_row(i.name, i.url, i.model_dir, str(i.pid), status, i.started_at)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0


def _load_shape(args: argparse.Namespace) -> tuple[Any, float | None] | None:
    """``(LoadShape, the spec's p50_ms or None)`` from the arguments; ``None`` (a message printed) if unusable."""
    from pydantic import ValidationError

    from stratos.errors import InputValidationError
    from stratos.loadtest import DEFAULT_MAX_SECONDS, LoadShape, default_requests
    from stratos.spec import LatencyConstraint, parse_spec

    shape_flags = {"--concurrency": args.concurrency, "--prompt-tokens": args.prompt_tokens}
    shape_flags["--output-tokens"] = args.output_tokens
    p50_ms: float | None = None
    try:
        if args.spec is not None:
            given = [flag for flag, value in shape_flags.items() if value is not None]
            if given:
                print(f"--spec sets the load's shape; drop {', '.join(given)}", file=sys.stderr)
                return None
            spec = parse_spec(args.spec.read_bytes(), str(args.spec))
            shape = LoadShape.from_spec(spec, max_seconds=_given(args.max_seconds, DEFAULT_MAX_SECONDS))
            p50_ms = spec.constraints.latency.p50_ms
        else:
            # A flag given as 0 is checked like any other value (LoadShape refuses it, naming the flag), never
            # replaced by the default.
            defaults = LatencyConstraint.model_fields
            concurrency = _given(args.concurrency, defaults["concurrency"].default)
            shape = LoadShape(
                concurrency=concurrency,
                prompt_tokens=_given(args.prompt_tokens, defaults["prompt_tokens"].default),
                output_tokens=_given(args.output_tokens, defaults["output_tokens"].default),
                requests=default_requests(max(1, concurrency)),
                max_seconds=_given(args.max_seconds, DEFAULT_MAX_SECONDS),
            )
        if args.requests is not None:
            shape = LoadShape.model_validate({**shape.model_dump(), "requests": args.requests})
    except OSError as exc:
        print(f"{args.spec}: cannot read: {exc.strerror}", file=sys.stderr)
        return None
    except InputValidationError as exc:
        print(f"{args.spec}: INVALID: " + "; ".join(str(err) for err in exc.errors), file=sys.stderr)
        return None
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = "--" + str(error["loc"][0]).replace("_", "-") if error["loc"] else "the load"
        print(f"{flag}: {error['msg']}", file=sys.stderr)
        return None
    return shape, p50_ms


def _given(value: Any, default: Any) -> Any:
    """``value`` when the flag was given (0 included), else ``default``."""
    return default if value is None else value


def _cmd_loadtest(args: argparse.Namespace) -> int:
    from stratos.loadtest import SageMakerRuntimeTransport, Transport, latency_limit_ms, run_load_test, verdict

    if args.region and not args.aws:
        print("--region is for --aws (a SageMaker endpoint)", file=sys.stderr)
        return 2
    settings = _load_shape(args)
    if settings is None:
        return 2
    shape, p50_ms = settings
    transport: Transport
    if args.aws:
        transport = SageMakerRuntimeTransport(args.endpoint, region=args.region, pool=shape.concurrency)
    else:
        from stratos_cli.local.serving import LocalTransport

        transport = LocalTransport(args.endpoint)
    result = run_load_test(transport, shape)
    passed, reason = verdict(result, p50_ms) if p50_ms is not None else (None, "")
    if args.json:
        doc: dict[str, Any] = {"endpoint": args.endpoint, "shape": shape.model_dump(mode="json")}
        doc["result"] = result.model_dump(mode="json")
        if p50_ms is not None:
            doc |= {"p50_limit_ms": latency_limit_ms(p50_ms), "passed": passed, "reason": reason}
        print(json.dumps(doc, indent=2))
    else:
        _print_load(args.endpoint, shape, result)
        if p50_ms is not None:
            print(("PASS: " if passed else "FAIL: ") + reason)
    return 1 if passed is False else 0


def _print_load(endpoint: str, shape: Any, result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    title = (
        f"{endpoint}: {result.requests} requests at concurrency {shape.concurrency}, prompt ~{shape.prompt_tokens} "
        f"tokens, max_new_tokens {shape.output_tokens}"
    )
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rate = "-" if result.tokens_per_s is None else f"{result.tokens_per_s:,.1f} ({result.tokens_counted})"
    prompt = "-" if result.prompt_tokens is None else f"{result.prompt_tokens} tokens"
    rows = [
        ("p50 latency", ms(result.p50_ms)),
        ("p90 latency", ms(result.p90_ms)),
        ("mean / max latency", f"{ms(result.mean_ms)} / {ms(result.max_ms)}"),
        ("generated tokens/s", rate),
        ("generated tokens", f"{result.output_tokens:,}"),
        ("prompt as the endpoint counted it", prompt),
        (
            "errors",
            f"{result.errors} of {result.requests}" + (f" ({result.error_samples[0]})" if result.errors else ""),
        ),
        ("measured wall time", f"{result.wall_s:,.1f} s" + (" (time cap reached)" if result.stopped_by_time else "")),
        ("warm-up (excluded)", ms(result.warmup_ms) if result.warmup_error is None else result.warmup_error),
    ]
    for row in rows:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 120).print(table)
