"""``stratos`` command line: validate and describe task specs (more subcommands join as the pipeline grows).

Exit codes: 0 success; 1 the input was rejected (each reason printed); 2 usage error.
Heavy libraries are imported inside the subcommand that needs them, so ``stratos validate`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stratos.errors import StratosError

#: Modules that add a subcommand: each has ``register(subparsers)`` which adds its parser and sets
#: ``func``. Keep their top-level imports light; import heavy libraries inside the command function.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "stratos_cli.data_cli",
    "stratos_cli.plan_cli",
    "stratos_cli.serving_cli",
    "stratos_cli.run_cli",
    "stratos_cli.ops",
)


def _data_locations(text: str) -> list[Any]:
    """argparse type of ``--data-buckets``: comma-separated ``bucket`` or ``bucket/prefix/`` entries."""
    from stratos.spec import parse_data_location

    try:
        return [parse_data_location(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _cmd_validate(args: argparse.Namespace) -> int:
    from stratos.errors import SpecValidationError
    from stratos.pipeline.validate import candidate_errors
    from stratos.spec import data_location_errors, parse_spec

    failed = 0
    for path in args.specs:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            failed += 1
            continue
        try:
            spec = parse_spec(raw, source=str(path))
            # What ValidateSpec checks beyond the spec contract without a stack: the candidates the planner
            # knows, and with --data-bucket where the data may be.
            found = candidate_errors(spec)
            if args.data_buckets is not None:
                found += data_location_errors(spec, args.data_buckets)
            if found:
                raise SpecValidationError(found, str(path))
        except StratosError as exc:
            failed += 1
            errors = getattr(exc, "errors", ())
            print(f"{path}: INVALID ({len(errors)} error{'s' if len(errors) != 1 else ''})", file=sys.stderr)
            for err in errors:
                print(f"  {err}", file=sys.stderr)
            continue
        print(f"{path}: OK (task {spec.task_id}, {spec.task.kind}, data from {spec.data.source})")
    return 1 if failed else 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from stratos.spec import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=args.indent))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stratos", description="Stratos: LLM distillation on AWS serverless.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check task spec files; exit 1 if any is invalid")
    validate.add_argument("specs", nargs="+", metavar="SPEC", help="task spec JSON file(s)")
    validate.add_argument(
        "--data-buckets",
        type=_data_locations,
        metavar="LOCATIONS",
        help=(
            "also check the data URIs lie where the stack reads data: comma-separated BUCKET or BUCKET/PREFIX/ "
            "entries, e.g. my-artifacts/data/,team-data (the artifacts bucket's data/ and DataBucketName)"
        ),
    )
    validate.set_defaults(func=_cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of the task spec")
    schema.add_argument("--indent", type=int, default=2, help="JSON indentation (default 2)")
    schema.set_defaults(func=_cmd_schema)

    for module_name in _SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stratos`` console script. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except StratosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
