"""Lambda settings: read once from the environment, validated, each required one named when missing.

The SAM template sets the same variables on every function (``Globals``), plus ``STRATOS_STATE_MACHINE_ARN``
on the re-distillation sweep only (the state machine refers to the other functions, so giving them its ARN
would be a circular reference). A step asks for what it needs with :meth:`Settings.require`, which raises
:class:`~stratos.errors.ConfigurationError` naming the variable — never a silent empty default.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratos.errors import ConfigurationError

#: Environment variable of each setting.
ENV: dict[str, str] = {
    "specs_bucket": "STRATOS_SPECS_BUCKET",
    "artifacts_bucket": "STRATOS_ARTIFACTS_BUCKET",
    "runs_table": "STRATOS_RUNS_TABLE",
    "state_machine_arn": "STRATOS_STATE_MACHINE_ARN",
    "serving_role_arn": "STRATOS_SERVING_ROLE_ARN",
    "stack_name": "STRATOS_STACK_NAME",
    "data_buckets": "STRATOS_DATA_BUCKETS",
    "inference_image_uri": "STRATOS_INFERENCE_IMAGE_URI",
    "cpu_inference_image_uri": "STRATOS_CPU_INFERENCE_IMAGE_URI",
    "models_s3_uri": "STRATOS_MODELS_S3_URI",
    "price_source": "STRATOS_PRICE_SOURCE",
    "instance_allowlist": "STRATOS_INSTANCE_ALLOWLIST",
    "regression_tolerance": "STRATOS_REGRESSION_TOLERANCE",
    "bedrock_teachers": "STRATOS_BEDROCK_TEACHERS",
    "teacher_endpoints": "STRATOS_TEACHER_ENDPOINTS",
    "region": "AWS_REGION",
}


class Settings(BaseModel):
    """Every setting a Stratos Lambda reads.

    Attributes:
        specs_bucket: the watched bucket; specs live under ``specs/`` and nothing else is written there.
        artifacts_bucket: where runs write (``runs/<run_id>/...``), models are staged (``models/``).
        runs_table: DynamoDB table of run and task records.
        state_machine_arn: the distillation state machine (the sweep starts runs on it).
        serving_role_arn: execution role the served models run under (Deploy passes it to CreateModel); it
            reads model artifacts only. Training jobs run under their own role (the state machine's).
        stack_name: the stack's name; every SageMaker resource Stratos creates is tagged
            ``stratos:managed-by=<stack_name>`` and IAM lets the stack change only resources carrying it.
        data_buckets: buckets besides the artifacts bucket's ``data/`` prefix that specs may read data from
            (the ``DataBucketName`` stack parameter); nothing else is accepted.
        inference_image_uri: serving container image for accelerated (GPU) instances (an LLM-serving DLC).
        cpu_inference_image_uri: serving container image for CPU-only instances.
        models_s3_uri: S3 prefix holding one Hugging Face model directory per catalog id
            (``<prefix><model id>/config.json``); the training job gets them as input channels.
        price_source: ``live`` asks the AWS Pricing API (snapshot as fallback), ``snapshot`` never does.
        instance_allowlist: instance types this account may use (stands in for service quotas); empty = all.
        regression_tolerance: how much lower (absolute accuracy, 0..1) a new student may score than the one
            serving before the evaluation gate rejects it.
        region: the AWS region the stack runs in (``AWS_REGION``, set by Lambda).
        bedrock_teachers: Bedrock model ids the training role may invoke (template ``BedrockTeacherModelIds``);
            a spec naming another Bedrock teacher is refused by ValidateSpec.
        teacher_endpoints: SageMaker endpoints the training role may invoke as teachers (template
            ``TeacherEndpointNames``); likewise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    specs_bucket: str | None = None
    artifacts_bucket: str | None = None
    runs_table: str | None = None
    state_machine_arn: str | None = None
    serving_role_arn: str | None = None
    stack_name: str | None = None
    data_buckets: tuple[str, ...] = ()
    inference_image_uri: str | None = None
    cpu_inference_image_uri: str | None = None
    models_s3_uri: str | None = None
    price_source: Literal["live", "snapshot"] = "live"
    instance_allowlist: tuple[str, ...] = ()
    regression_tolerance: float = Field(default=0.01, ge=0, le=1)
    bedrock_teachers: tuple[str, ...] = ()
    teacher_endpoints: tuple[str, ...] = ()
    region: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``); empty variables count as unset.

        Raises:
            ConfigurationError: a variable is present but malformed (naming it and why).
        """
        env = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        for name, var in ENV.items():
            value = env.get(var, "").strip()
            if not value:
                continue
            if name in ("instance_allowlist", "data_buckets", "bedrock_teachers", "teacher_endpoints"):
                raw[name] = tuple(v.strip() for v in value.split(",") if v.strip())
            else:
                raw[name] = value
        if "models_s3_uri" in raw and not str(raw["models_s3_uri"]).endswith("/"):
            raw["models_s3_uri"] = f"{raw['models_s3_uri']}/"
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise ConfigurationError(f"{ENV.get(field, field)}: {first['msg']}") from exc

    def require(self, name: str) -> str:
        """The value of a required string setting.

        Raises:
            ConfigurationError: it is unset, naming the environment variable to set.
        """
        value = getattr(self, name)
        if not value:
            raise ConfigurationError(f"{ENV[name]} is not set; this Lambda needs it (see template.yaml Globals)")
        return str(value)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once (cold start)."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (the local harness and tests change the environment between stacks)."""
    get_settings.cache_clear()
