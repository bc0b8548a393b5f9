"""Print template.yaml after the SAM transform (CloudFormation JSON), for scanners that do not run it themselves.

checkov reads ``AWS::Serverless::Function`` properties but not the IAM roles SAM generates from their ``Policies``;
scanning the transformed template as well covers those roles. Runs with the SAM CLI's virtualenv (it has
``samtranslator``), offline: local code and definition paths are replaced by placeholder S3 URIs, the parameters
without a default get placeholder values, and no managed policy is looked up by name.

Usage: ``.sam-venv/bin/python .ci/sam_transform.py template.yaml > transformed.json``
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    """Managed-policy loader for an offline transform: the template names no AWS managed policy by name."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(text: str) -> dict[str, Any]:
    """The CloudFormation template SAM makes of ``text`` (a SAM template)."""
    template = yaml_parse(text)
    template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://placeholder/code.zip"
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = "s3://placeholder/definition.json"
    parameters = {name: "placeholder" for name, spec in template.get("Parameters", {}).items() if "Default" not in spec}
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    result: dict[str, Any] = transform(template, parameters, _NoManagedPolicies())
    return result


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        json.dump(transformed(handle.read()), sys.stdout, indent=1, default=str)
