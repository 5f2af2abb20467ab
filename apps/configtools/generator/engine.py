"""Which generator runs, and the rule both follow: nothing counts as generated until the
check passed. The model gets one repair round with the check's message; the template is
deterministic, so a failure there is reported as it is (CI compiles its outputs)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anthropic

from apps.configtools.generator import check as checker
from apps.configtools.generator import model
from apps.configtools.generator.scaffold import Scaffold
from apps.configtools.generator.template import template_scaffold

log = logging.getLogger(__name__)


@dataclass
class Result:
    engine: str  # "model" | "template" (Generation.Engine)
    ok: bool
    scaffold: Scaffold | None
    tools: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    attempts: int = 1


def engine_name() -> str:
    return "model" if model.api_key() else "template"


def generate(*, prompt: str, language: str) -> Result:
    if language == "typescript" and checker.toolchain() is None:
        # Nothing could be checked, so nothing is generated (and no model call is paid for).
        log.error("generator: %s", checker.toolchain_missing())
        return Result(
            engine_name(), False, None, message="TypeScript cannot be checked on this server yet; try Python."
        )
    if engine_name() == "template":
        scaffold = template_scaffold(prompt=prompt, language=language)
        checked = checker.check(scaffold)
        return Result("template", checked.ok, scaffold, checked.tools, checked.message)
    return _with_model(prompt=prompt, language=language)


def _with_model(*, prompt: str, language: str) -> Result:
    conversation = model.Conversation(prompt=prompt, language=language)
    scaffold: Scaffold | None = None
    message = ""
    try:
        for attempt in (1, 2):
            try:
                scaffold = conversation.ask() if attempt == 1 else conversation.repair(message)
            except model.BadAnswer as exc:
                scaffold, message = None, str(exc)
                continue
            checked = checker.check(scaffold)
            if checked.ok:
                return Result("model", True, scaffold, checked.tools, checked.message, attempts=attempt)
            message = checked.message
    except anthropic.APIStatusError as exc:
        # The status and the API's own error type only: its body could quote our request.
        log.warning("generator model call failed: HTTP %s", exc.status_code)
        return Result("model", False, scaffold, message=f"The model answered HTTP {exc.status_code}; try again later.")
    except anthropic.APIConnectionError:
        log.warning("generator model unreachable")
        return Result("model", False, scaffold, message="The model could not be reached; try again later.")
    return Result("model", False, scaffold, message=message, attempts=2)
