"""The upstream the MCP conformance suite expects behind the gateway.

`conformance server` (server mode) calls fixed names: tools ``test_*``, resources
``test://...`` and prompts ``test_*``, with fixed answers. This is that server, built with
the official ``mcp`` SDK (after the Python SDK's own conformance "everything server"), so
the suite can run *through* the gateway and judge what the gateway relays.
"""

from __future__ import annotations

import asyncio
import base64
import json

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

# A 1x1 PNG and a tiny WAV: the suite compares content types, not pixels.
IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
AUDIO = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="


class _Answer(BaseModel):
    response: str = Field(description="User's response")


class _Defaults(BaseModel):
    """SEP-1034: a default for every primitive type."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(
        default="active", description="User status", json_schema_extra={"enum": ["active", "inactive", "pending"]}
    )
    verified: bool = Field(default=True, description="Verification status")


class _Enums(BaseModel):
    """SEP-1330: every enum shape (the property names are the suite's, camelCase)."""

    untitledSingle: str = Field(
        description="Simple enum without titles", json_schema_extra={"enum": ["active", "inactive", "pending"]}
    )
    titledSingle: str = Field(
        description="Enum with titled options (oneOf)",
        json_schema_extra={
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ]
        },
    )
    untitledMulti: list[str] = Field(
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(
        description="Multi-select with titled options",
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"const": "feature", "title": "New Feature"},
                    {"const": "bug", "title": "Bug Fix"},
                    {"const": "docs", "title": "Documentation"},
                ]
            }
        },
    )
    legacyEnum: str = Field(
        description="Legacy enum with enumNames",
        json_schema_extra={
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    )


def build_conformance_server() -> MCPServer:
    server = MCPServer("mcp-conformance-test-server", version="1.0")

    @server.tool(description="Tests simple text content response")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @server.tool(description="Tests image content response")
    def test_image_content() -> list[ImageContent]:
        return [ImageContent(type="image", data=IMAGE, mime_type="image/png")]

    @server.tool(description="Tests audio content response")
    def test_audio_content() -> list[AudioContent]:
        return [AudioContent(type="audio", data=AUDIO, mime_type="audio/wav")]

    @server.tool(description="Tests embedded resource content response")
    def test_embedded_resource() -> list[EmbeddedResource]:
        return [
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
                ),
            )
        ]

    @server.tool(description="Tests response with multiple content types (text, image, resource)")
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=IMAGE, mime_type="image/png"),
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://mixed-content-resource",
                    mime_type="application/json",
                    text='{"test": "data", "value": 123}',
                ),
            ),
        ]

    @server.tool(description="Tests tool that emits log messages during execution")
    async def test_tool_with_logging(ctx: Context) -> str:
        for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(text)
            await asyncio.sleep(0.05)
        return "Tool with logging executed successfully"

    @server.tool(description="Tests tool that reports progress notifications")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step in (0, 50, 100):
            await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
            await asyncio.sleep(0.05)
        meta = ctx.request_context.meta or {}
        return str(meta.get("progress_token", 0))

    @server.tool(description="Tests server-initiated sampling (LLM completion request)")
    async def test_sampling(prompt: str, ctx: Context) -> str:
        try:
            result = await ctx.session.create_message(
                messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
                max_tokens=100,
            )
        except Exception as exc:  # the suite reads the text either way
            return f"Sampling not supported or error: {exc}"
        return f"LLM response: {result.content.text if result.content.type == 'text' else 'No response'}"

    async def elicit(ctx: Context, message: str, schema: type[BaseModel], label: str) -> str:
        try:
            result = await ctx.elicit(message=message, schema=schema)
        except Exception as exc:
            return f"Elicitation not supported or error: {exc}"
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"{label}: action={result.action}, content={content}"

    @server.tool(description="Tests server-initiated elicitation (user input request)")
    async def test_elicitation(message: str, ctx: Context) -> str:
        return await elicit(ctx, message, _Answer, "User response")

    @server.tool(description="Tests elicitation with default values for all primitive types (SEP-1034)")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        return await elicit(ctx, "Please provide user information", _Defaults, "Elicitation result")

    @server.tool(description="Tests elicitation with enum schema variations per SEP-1330")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        return await elicit(
            ctx, "Please select values using different enum schema types", _Enums, "Elicitation completed"
        )

    @server.tool(description="Tests error response handling")
    def test_error_handling() -> str:
        raise RuntimeError("This tool intentionally returns an error for testing")

    @server.tool(description="Tests SSE polling by closing stream mid-call (SEP-1699)")
    async def test_reconnection(ctx: Context) -> str:
        await ctx.info("Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        await ctx.info("After reconnect")
        return "Reconnection test completed"

    # The 2026-07-28 diagnostics of the server-stateless scenario.
    @server.tool(description="Needs the sampling capability; refuses (-32021) a client that did not declare it")
    async def test_missing_capability(ctx: Context) -> str:
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.sampling is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This tool needs the sampling capability.",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return "sampling declared"

    @server.tool(description="Asks for input mid-call; must never put an independent request on the response stream")
    async def test_streaming_elicitation(ctx: Context) -> str:
        await ctx.report_progress(progress=1, total=2, message="asking")
        return await elicit(ctx, "Please answer", _Answer, "User response")

    @server.tool(description="Logs three messages; delivered only to a request that set a log level")
    async def test_logging_tool(ctx: Context) -> str:
        for text in ("one", "two", "three"):
            await ctx.info(text)
        return "logged"

    @server.resource("test://static-text", description="A static text resource for testing")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", description="A static binary resource (image) for testing")
    def static_binary() -> bytes:
        return base64.b64decode(IMAGE)

    @server.resource("test://template/{id}/data", description="A resource template with parameter substitution")
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.tool(description="The suite's hook: announces a change of the tool list (SEP-2575)")
    async def test_trigger_tool_change(ctx: Context) -> str:
        await ctx.notify_tools_changed()
        return "tools changed"

    @server.tool(description="The suite's hook: announces a change of the prompt list (SEP-2575)")
    async def test_trigger_prompt_change(ctx: Context) -> str:
        await ctx.notify_prompts_changed()
        return "prompts changed"

    @server.tool(description="Not the suite's: asks for a completion and reports the client's progress on it")
    async def mcpnest_sample_with_progress(ctx: Context) -> str:
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        request = CreateMessageRequest(
            params=CreateMessageRequestParams(
                messages=[SamplingMessage(role="user", content=TextContent(type="text", text="slowly"))],
                max_tokens=10,
            )
        )
        result = await ctx.session.send_request(request, CreateMessageResult, progress_callback=on_progress)
        return f"{result.content.text}; progress seen: {seen}"

    @server.tool(description="Not the suite's: a tool that mcpnest_update_watched_resource removes")
    def mcpnest_removed_later() -> str:
        return "still here"

    @server.tool(description="Not the suite's: tells subscribers test://watched-resource changed, and the tool list")
    async def mcpnest_update_watched_resource(ctx: Context) -> str:
        if "mcpnest_removed_later" in {tool.name for tool in server._tool_manager.list_tools()}:
            server.remove_tool("mcpnest_removed_later")
        # Both eras: a 2025 session's GET stream, and 2026-07-28 subscriptions/listen streams.
        await ctx.session.send_resource_updated("test://watched-resource")
        await ctx.session.send_tool_list_changed()
        await ctx.notify_resource_updated("test://watched-resource")
        await ctx.notify_tools_changed()
        return "updated"

    @server.resource("test://watched-resource", description="A resource that can be subscribed to for updates")
    def watched() -> str:
        return "Watched resource content"

    @server.prompt(description="A simple prompt without arguments")
    def test_simple_prompt() -> list[UserMessage]:
        return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @server.prompt(description="A prompt with required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @server.prompt(description="A prompt that includes an embedded resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        resource = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(role="user", content=EmbeddedResource(type="resource", resource=resource)),
            UserMessage(
                role="user", content=TextContent(type="text", text="Please process the embedded resource above.")
            ),
        ]

    @server.prompt(description="A prompt that includes image content")
    def test_prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(role="user", content=ImageContent(type="image", data=IMAGE, mime_type="image/png")),
            UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
        ]

    @server.completion()
    async def complete(ref, argument, context) -> Completion:
        return Completion(values=[], total=0, has_more=False)

    # MCPServer has no public hooks for these yet; the low-level server takes plain handlers.
    async def acknowledge(ctx: ServerRequestContext, params) -> EmptyResult:
        return EmptyResult()

    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, acknowledge)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, acknowledge)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, acknowledge)
    return server
