"""The generator with a model: the Anthropic Messages API, through the official SDK.

The model answers by calling one tool, ``submit_scaffold``, whose input schema is
``ModelAnswer``: the answer arrives as JSON in a ``tool_use`` block and is validated against
that shape, never scraped out of prose. When the check fails, the conversation goes on with a
``tool_result`` holding the compiler's message (``is_error``), once.

Key, model and base URL come from settings or the environment (``ANTHROPIC_API_KEY``,
``MCPNEST_GENERATOR_MODEL``, ``ANTHROPIC_BASE_URL``); the key is never logged or shown.
"""

from __future__ import annotations

from typing import Any

import anthropic
from django.conf import settings
from pydantic import BaseModel, Field, ValidationError

from apps.configtools.generator.scaffold import SDK_VERSION, Scaffold

DEFAULT_MODEL = "claude-sonnet-5-5"
TOOL = "submit_scaffold"
MAX_TOKENS = 8000


class ModelAnswer(BaseModel):
    """What the model must give: the whole server in one file."""

    name: str = Field(description="A short kebab-case name ending in -mcp, e.g. weather-mcp.", max_length=60)
    description: str = Field(description="One or two sentences: what the server does.", max_length=1000)
    code: str = Field(description="The complete source file.", max_length=60_000)
    env: list[str] = Field(
        default_factory=list,
        description="The environment variables the code reads (UPPER_SNAKE_CASE), e.g. WEATHER_API_KEY.",
    )


class BadAnswer(Exception):
    """The model answered without calling the tool, or with input of the wrong shape."""


def api_key() -> str:
    return settings.ANTHROPIC_API_KEY


def model_name() -> str:
    return settings.MCPNEST_GENERATOR_MODEL or DEFAULT_MODEL


SYSTEM = {
    "typescript": f"""You write Model Context Protocol (MCP) servers in TypeScript.
Answer only by calling the {TOOL} tool. The code is one file, src/index.ts, compiled with tsc
(strict, module Node16, ES2022) against @modelcontextprotocol/sdk {SDK_VERSION}, zod 4 and
@types/node 22, and run with `node build/index.js` over stdio. Use the low-level
Server from "@modelcontextprotocol/sdk/server/index.js" with StdioServerTransport, register
the tools with ListToolsRequestSchema (each with a JSON Schema inputSchema) and handle them in
CallToolRequestSchema; throw McpError(ErrorCode.InvalidParams, ...) for an unknown tool. Read
every key or setting from process.env with a comment saying where it is set (the client's
config); never hard-code a secret. Write only to stderr, never to stdout. No network call at
startup: the server must start and list its tools without any variable set.""",
    "python": f"""You write Model Context Protocol (MCP) servers in Python.
Answer only by calling the {TOOL} tool. The code is one file, server.py, run with the `mcp`
Python SDK 2.x: `from mcp.server import MCPServer`, `mcp = MCPServer("name")`, tools as
functions decorated with `@mcp.tool()` with typed parameters (typing.Annotated and
pydantic.Field for descriptions and bounds) and docstrings, and `mcp.run()` (stdio) under
`if __name__ == "__main__":`. Read every key or setting from os.environ with a comment saying
where it is set (the client's config); never hard-code a secret. Print only to stderr. No
network call at import or startup: the server must start and list its tools without any
variable set.""",
}


def _param(block: Any) -> dict[str, Any]:
    """An answer's block as the request's param: only the fields a request may carry."""
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if block.type == "text":
        return {"type": "text", "text": block.text}
    return block.model_dump(exclude_none=True)


class Conversation:
    """One generation: the first answer, then at most one repair."""

    def __init__(self, *, prompt: str, language: str, client: anthropic.Anthropic | None = None) -> None:
        self.language = language
        self.client = client or anthropic.Anthropic(
            api_key=api_key(),
            base_url=settings.ANTHROPIC_BASE_URL or None,
            timeout=120,
            max_retries=1,
        )
        self.messages: list[dict[str, Any]] = [
            {"role": "user", "content": f"Write this MCP server in {language}:\n\n{prompt}"}
        ]
        self._last_tool_use: str | None = None

    def ask(self) -> Scaffold:
        """The model's scaffold (``BadAnswer`` if it gave none we can read)."""
        response = self.client.messages.create(
            model=model_name(),
            max_tokens=MAX_TOKENS,
            system=SYSTEM[self.language],
            messages=self.messages,
            tools=[
                {
                    "name": TOOL,
                    "description": "Submit the complete MCP server.",
                    "input_schema": ModelAnswer.model_json_schema(),
                }
            ],
            tool_choice={"type": "tool", "name": TOOL},
        )
        self.messages.append({"role": "assistant", "content": [_param(block) for block in response.content]})
        use = next((block for block in response.content if block.type == "tool_use" and block.name == TOOL), None)
        if use is None:
            self._last_tool_use = None
            raise BadAnswer(f"The model answered without calling {TOOL} (stop reason: {response.stop_reason}).")
        self._last_tool_use = use.id
        try:
            answer = ModelAnswer.model_validate(use.input)
            return Scaffold(
                name=answer.name,
                description=answer.description,
                language=self.language,
                code=answer.code,
                env=answer.env,
            ).with_install()
        except ValidationError as exc:
            raise BadAnswer(
                f"The model's answer did not have the expected shape: {exc.error_count()} problem(s)."
            ) from exc

    def repair(self, message: str) -> Scaffold:
        """Ask once more, with what went wrong (the compiler's or the run's message)."""
        text = f"The check failed:\n\n{message}\n\nFix the code and submit the whole file again."
        if self._last_tool_use:
            content: list[dict[str, Any]] = [
                {"type": "tool_result", "tool_use_id": self._last_tool_use, "content": text, "is_error": True}
            ]
        else:
            content = [{"type": "text", "text": text}]
        self.messages.append({"role": "user", "content": content})
        return self.ask()
