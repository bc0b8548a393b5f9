"""Stratos domain package, shared by every Lambda handler (one SAM CodeUri) and the operator CLI.

Lambda-safe: importing ``stratos`` or any module a handler uses pulls in only pydantic, powertools and
boto3. Heavy tooling (moto, rich, matplotlib, the training stack) is imported lazily by the CLI and the
local harness only.
"""

__version__ = "0.1.0"
