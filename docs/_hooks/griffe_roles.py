"""Griffe extensions that adapt simtrio's docstrings to the Markdown reference pages.

* Sphinx-style roles (:class:`~simtrio.errors.ProtocolError`), which Markdown would show
  verbatim, become inline code; ``~`` keeps only the last component, as Sphinx does.
* References to the API contract by section, "(api.md §4)", are dropped: that document is not
  part of this site. References to the protocol ("protocol §6.3") stay; the protocol notes page
  maps section numbers to names.
* An attrs field shows its default value rather than the ``attrs.field(...)`` declaring it.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_CONTRACT = re.compile(r"\s*\(api\.md §[0-9.]+\)")
_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):`(~?)([^`]+)`"
)


def _replace(match: re.Match[str]) -> str:
    short, target = match.groups()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite roles in every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _CONTRACT.sub("", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(_replace, text)


class AttrsDefaults(griffe.Extension):
    """Show an attrs field's default, not the ``attrs.field(...)`` call that declares it."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.value is None:
            return
        text = str(attr.value)
        if not text.startswith(("attrs.field(", "attr.ib(", "field(")):
            return
        try:
            call = ast.parse(text, mode="eval").body
        except SyntaxError:
            return
        if not isinstance(call, ast.Call):
            return
        for keyword in call.keywords:
            if keyword.arg == "default":
                attr.value = ast.unparse(keyword.value)
                return
            if keyword.arg == "factory":
                factory = keyword.value
                if isinstance(factory, ast.Lambda):
                    attr.value = ast.unparse(factory.body)
                else:
                    attr.value = f"{ast.unparse(factory)}()"
                return
