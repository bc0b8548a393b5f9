"""Read ``template.yaml`` as CloudFormation does, for the embedded AWS.

:func:`load_template` parses the YAML with CloudFormation's short-form tags (``!Ref``, ``!Sub``,
``!GetAtt``, ...) turned into their long forms; :class:`Resolver` evaluates the intrinsic functions the
Stratos template uses (Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::If, Fn::Select, Fn::Split and the condition
functions) against parameter values and the embedded resources' physical names. Anything else raises
:class:`TemplateError`, so a template change that the embedded stack cannot follow fails loudly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class TemplateError(ValueError):
    """The template uses something the embedded stack cannot resolve (named in the message)."""


class _NoValue:
    """``AWS::NoValue``: the property (or list item) is removed."""


NO_VALUE = _NoValue()


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader plus CloudFormation's short-form intrinsic tags."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: str | Path) -> dict[str, Any]:
    """The template at ``path`` as plain dicts/lists with long-form intrinsics.

    Raises:
        TemplateError: not a YAML mapping with ``Resources``.
    """
    doc = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return doc


_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    """Evaluates intrinsic functions.

    Args:
        template: the loaded template (for Conditions).
        parameters: parameter values as strings (CommaDelimitedList as a comma-joined string).
        refs: ``Ref`` value of each resource logical id.
        attributes: ``Fn::GetAtt`` values, keyed ``"Logical.Attribute"``.
        pseudo: ``AWS::Region``, ``AWS::AccountId``, ``AWS::Partition``, ``AWS::StackName``, ...
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        refs: Mapping[str, str],
        attributes: Mapping[str, str],
        pseudo: Mapping[str, str],
    ) -> None:
        self.template = template
        self.parameters = dict(parameters)
        self.refs = dict(refs)
        self.attributes = dict(attributes)
        self.pseudo = dict(pseudo)
        self._list_params = {
            name
            for name, spec in (template.get("Parameters") or {}).items()
            if str(spec.get("Type", "")).startswith("CommaDelimitedList")
            or str(spec.get("Type", "")).startswith("List<")
        }

    def condition(self, name: str) -> bool:
        """The value of a named condition."""
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"unknown condition {name!r}")
        return bool(self.resolve(conditions[name]))

    def ref(self, name: str) -> Any:
        """``Ref``: a parameter (a list for CommaDelimitedList), a pseudo parameter or a resource."""
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            if name in self._list_params:
                return [v for v in value.split(",")] if value else [""]
            return value
        if name in self.refs:
            return self.refs[name]
        raise TemplateError(f"Ref {name!r}: no such parameter, pseudo parameter or resource")

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic evaluated and ``AWS::NoValue`` entries removed."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self._getatt(f"{logical}.{attribute}")
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(v) for v in self.resolve(items))
        if key == "Fn::If":
            name, yes, no = arg
            return self.resolve(yes if self.condition(name) else no)
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in arg)
            return left == right
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if key == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        if key == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::Split":
            sep, text = arg
            return str(self.resolve(text)).split(sep)
        raise TemplateError(f"intrinsic {key} is not supported by the embedded stack")

    def _getatt(self, name: str) -> str:
        if name not in self.attributes:
            raise TemplateError(f"Fn::GetAtt {name}: unknown resource attribute")
        return self.attributes[name]

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return self._getatt(name)
            value = self.ref(name)
            if isinstance(value, list):
                raise TemplateError(f"Fn::Sub ${{{name}}}: a list parameter cannot be substituted")
            return str(value)

        return _SUB_VAR.sub(one, str(text))


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Every parameter's value: the override, else the default.

    Raises:
        TemplateError: a parameter without a default was not given, or an override names no parameter.
    """
    params = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise TemplateError(f"no such template parameters: {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in params.items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise TemplateError(f"template parameter {name} has no default: pass a value")
    return values


def substitute_definition(text: str, substitutions: Mapping[str, Any]) -> str:
    """Apply Step Functions ``DefinitionSubstitutions`` (``${Name}`` placeholders) to a definition.

    Raises:
        TemplateError: the definition uses a placeholder with no substitution.
    """
    missing = sorted({m.group(1) for m in _SUB_VAR.finditer(text)} - set(substitutions))
    if missing:
        raise TemplateError(f"definition placeholders without a DefinitionSubstitution: {', '.join(missing)}")
    return _SUB_VAR.sub(lambda m: str(substitutions[m.group(1)]), text)
