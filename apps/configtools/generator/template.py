"""The generator without a model: a scaffold from the description's verbs and nouns.

"Lists GitHub issues, creates issues and searches pull requests" → ``list_issues``,
``create_issue``, ``search_pull_requests``, each with the JSON Schema its verb implies
(a list takes a ``limit``, a search a ``query``, a create a ``title`` …), a handler that says
where the real call goes, and ``GITHUB_API_KEY`` read from the environment. Deterministic:
the same description gives the same code, so CI can compile and run every shape it makes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from apps.configtools.generator.scaffold import Scaffold

# verb (as written, stemmed) → the tool's verb and its parameters
_PARAMS: dict[str, list[tuple[str, dict[str, Any], bool]]] = {
    # name, JSON Schema, required
    "get": [("id", {"type": "string", "description": "Its identifier."}, True)],
    "list": [
        (
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "How many to return."},
            False,
        )
    ],
    "search": [
        ("query", {"type": "string", "description": "What to look for."}, True),
        (
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "How many to return."},
            False,
        ),
    ],
    "create": [
        ("title", {"type": "string", "description": "Its title or name."}, True),
        ("body", {"type": "string", "description": "Its text, if any."}, False),
    ],
    "update": [
        ("id", {"type": "string", "description": "Its identifier."}, True),
        ("title", {"type": "string", "description": "The new title or name."}, False),
        ("body", {"type": "string", "description": "The new text."}, False),
    ],
    "delete": [("id", {"type": "string", "description": "Its identifier."}, True)],
    "send": [
        ("to", {"type": "string", "description": "Who or where to send it to."}, True),
        ("message", {"type": "string", "description": "What to send."}, True),
    ],
    "convert": [
        ("input", {"type": "string", "description": "What to convert."}, True),
        ("format", {"type": "string", "description": "The format to convert it to."}, True),
    ],
    "translate": [
        ("text", {"type": "string", "description": "The text to translate."}, True),
        ("target_language", {"type": "string", "description": "The language to translate it into."}, True),
    ],
    "summarize": [("text", {"type": "string", "description": "The text to summarize."}, True)],
    "analyze": [("text", {"type": "string", "description": "What to analyze."}, True)],
    "check": [("input", {"type": "string", "description": "What to check."}, True)],
    "calculate": [("expression", {"type": "string", "description": "The expression to evaluate."}, True)],
}
_VERBS = {
    "get": "get", "fetch": "get", "read": "get", "retrieve": "get", "show": "get", "view": "get", "lookup": "get",
    "list": "list", "browse": "list", "enumerate": "list",
    "search": "search", "find": "search", "query": "search", "look": "search",
    "create": "create", "add": "create", "make": "create", "post": "create", "open": "create", "write": "create",
    "schedule": "create", "book": "create", "upload": "create", "save": "create",
    "update": "update", "edit": "update", "change": "update", "modify": "update", "rename": "update",
    "delete": "delete", "remove": "delete", "close": "delete", "archive": "delete", "cancel": "delete",
    "send": "send", "notify": "send", "email": "send", "message": "send", "publish": "send",
    "convert": "convert", "transform": "convert", "export": "convert",
    "translate": "translate", "summarize": "summarize", "summarise": "summarize",
    "analyze": "analyze", "analyse": "analyze", "validate": "check", "check": "check", "verify": "check",
    "calculate": "calculate", "compute": "calculate",
}  # fmt: skip
_SINGULAR_VERBS = {"get", "create", "update", "delete", "check", "send"}
_STOP_WORDS = """
a an the my our your their its all any some new existing given one each every of for from
in on to into with by and or but that which who using via about as at it them this these
those me us you can could will would should up mcp server tool tools api apis let lets
allows allow able also then when where
"""
_STOP = frozenset(_STOP_WORDS.split())
_SPLIT = re.compile(r"[,.;:!?()\[\]\"/]|\band\b|\bor\b|\bthen\b", re.IGNORECASE)
MAX_TOOLS = 8


@dataclass(frozen=True)
class ToolSpec:
    name: str
    verb: str
    noun: str  # words, space-separated
    description: str
    schema: dict[str, Any]


def _stem(word: str) -> str | None:
    """The verb ``word`` is an inflection of, if it is one we know."""
    word = word.lower()
    for candidate in (word, word[:-1] if word.endswith("s") else "", word[:-2] if word.endswith("es") else "",
                      word[:-3] if word.endswith("ing") else "", word[:-3] + "e" if word.endswith("ing") else "",
                      word[:-2] if word.endswith("ed") else "", word[:-1] if word.endswith("ed") else ""):  # fmt: skip
        if candidate and candidate in _VERBS:
            return _VERBS[candidate]
    return None


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z0-9]*", re.sub(r"['’]s\b", "", text))


def service_name(prompt: str) -> str:
    """The service the server talks to, as a proper noun in the description ("GitHub",
    "Slack"): a capitalised word that does not start a sentence and is not a verb."""
    for sentence in re.split(r"[.!?]\s+", prompt):
        for word in _words(sentence)[1:]:
            if word[0].isupper() and word.lower() not in _STOP and not _stem(word) and word.upper() != "MCP":
                return word
    return ""


def tool_specs(prompt: str) -> list[ToolSpec]:
    """Each verb with the nouns that follow it, within its clause; a clause's verbs share its
    nouns ("list and search issues" → ``list_issues``, ``search_issues``)."""
    specs: dict[str, ToolSpec] = {}
    # The service is the server's, not a tool's: "lists GitHub issues" → list_issues.
    service = service_name(prompt).lower()
    pending: list[str] = []  # verbs waiting for their noun
    for clause in _SPLIT.split(prompt):
        words = _words(clause or "")
        verbs_here: list[str] = []
        nouns: list[str] = []
        for word in words:
            # One verb per clause ("and" splits clauses): in "send messages", messages is the noun.
            verb = _stem(word) if not nouns and not verbs_here else None
            if verb:
                verbs_here.append(verb)
            elif word.lower() == service and not nouns:
                continue
            elif word.lower() not in _STOP and (verbs_here or pending):
                nouns.append(word.lower())
            elif nouns:
                break
        if verbs_here and not nouns:
            pending.extend(verbs_here)  # "list and search issues": the noun is in the next clause
            continue
        for verb in [*pending, *verbs_here] if nouns else []:
            noun_words = nouns[:2]
            if verb in _SINGULAR_VERBS:
                noun_words = [*noun_words[:-1], _singular(noun_words[-1])]
            name = re.sub(r"[^a-z0-9_]", "", f"{verb}_{'_'.join(noun_words)}")[:64]
            if name not in specs and len(specs) < MAX_TOOLS:
                specs[name] = _spec(name, verb, " ".join(noun_words))
        if nouns:
            pending = []
    if not specs:
        nouns = [w.lower() for w in _words(prompt) if w.lower() not in _STOP and not _stem(w)]
        noun = _singular(nouns[0]) if nouns else "item"
        specs[f"get_{noun}"] = _spec(f"get_{noun}", "get", noun)
    return list(specs.values())


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _spec(name: str, verb: str, noun: str) -> ToolSpec:
    params = _PARAMS[verb]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {param: dict(prop) for param, prop, _ in params},
        "required": [param for param, _, required in params if required],
        "additionalProperties": False,
    }
    description = {
        "get": f"Get one {noun} by its identifier.",
        "list": f"List {noun}.",
        "search": f"Search {noun}.",
        "create": f"Create {_a(noun)}.",
        "update": f"Update {_a(noun)}.",
        "delete": f"Delete {_a(noun)}.",
        "send": f"Send {_a(noun)}.",
        "convert": f"Convert {noun} to another format.",
        "translate": f"Translate {noun}.",
        "summarize": f"Summarize {noun}.",
        "analyze": f"Analyze {noun}.",
        "check": f"Check {_a(noun)}.",
        "calculate": f"Calculate {noun}.",
    }[verb]
    return ToolSpec(name=name, verb=verb, noun=noun, description=description, schema=schema)


def _env_var(service: str, prompt: str) -> str:
    if service:
        return re.sub(r"[^A-Z0-9]+", "_", service.upper()).strip("_") + "_API_KEY"
    return "API_KEY" if re.search(r"\bapi\b", prompt, re.IGNORECASE) else ""


def _server_name(service: str, specs: list[ToolSpec]) -> str:
    base = [service.lower()] if service else []
    noun = specs[0].noun.split()[-1] if specs else ""
    if noun and noun not in base:
        base.append(noun)
    return "-".join([*base, "mcp"])


def _comment_safe(text: str) -> str:
    """The prompt inside a comment or docstring: one line, no comment terminator, no double
    quote (it could close the docstring), no backslash (it could escape one)."""
    return " ".join(text.replace("*/", "* /").replace('"', "'").replace("\\", "/").split())[:500]


def template_scaffold(*, prompt: str, language: str) -> Scaffold:
    specs = tool_specs(prompt)
    service = service_name(prompt)
    env = _env_var(service, prompt)
    name = _server_name(service, specs)
    description = f"An MCP server for {service or 'your service'}: " + ", ".join(spec.name for spec in specs) + "."
    render = _typescript if language == "typescript" else _python
    code = render(
        name=name, description=description, prompt=_comment_safe(prompt), specs=specs, env=env, service=service
    )
    return Scaffold(
        name=name, description=description, language=language, code=code, env=[env] if env else []
    ).with_install()


# --- TypeScript ------------------------------------------------------------------------------


def _ts_argument(param: str, prop: dict[str, Any], required: bool) -> str:
    if prop["type"] == "integer":
        return f'const {param} = optionalInteger(args, "{param}", {prop.get("default", 0)});'
    if required:
        return f'const {param} = requireString(args, "{param}");'
    return f'const {param} = optionalString(args, "{param}");'


def _typescript(*, name: str, description: str, prompt: str, specs: list[ToolSpec], env: str, service: str) -> str:
    target = f"the {service} API" if service else "your service"
    env_block = (
        f'// {env}: the key for {target}. Set it in the client\'s config ("env"), never in this file.\n'
        f'const {env} = process.env.{env} ?? "";\n'
        if env
        else "// Read settings from process.env (set in the client's config), never hard-code a secret.\n"
    )
    tools = ",\n".join(
        "  {\n"
        f"    name: {json.dumps(spec.name)},\n"
        f"    description: {json.dumps(spec.description)},\n"
        f"    inputSchema: {json.dumps(spec.schema)},\n"
        "  }"
        for spec in specs
    )
    handlers = []
    for spec in specs:
        params = [(p, prop, p in spec.schema["required"]) for p, prop in spec.schema["properties"].items()]
        lines = [_ts_argument(p, prop, req) for p, prop, req in params]
        uses = f" (with {env})" if env else ""
        handlers.append(
            f"  [{json.dumps(spec.name)}, async (args) => {{\n"
            + "".join(f"    {line}\n" for line in lines)
            + f"    // Call {target} here{uses} and return what it answers.\n"
            + f"    return result({{ tool: {json.dumps(spec.name)}, {', '.join(p for p, _, _ in params)} }});\n"
            + "  }],"
        )
    missing = (
        f"  if (!{env}) {{\n"
        f'    console.error("{env} is not set: the tools will fail until the client\'s config sets it.");\n'
        "  }\n"
        if env
        else ""
    )
    return f"""#!/usr/bin/env node
/**
 * {name}: {description}
 *
 * Generated by MCPNest from: "{prompt}"
 * Build with `npm run build`; the client starts `node build/index.js` and talks to it over stdio.
 */
import {{ Server }} from "@modelcontextprotocol/sdk/server/index.js";
import {{ StdioServerTransport }} from "@modelcontextprotocol/sdk/server/stdio.js";
import {{
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type Tool,
}} from "@modelcontextprotocol/sdk/types.js";

{env_block}
type Args = Record<string, unknown>;
type Handler = (args: Args) => Promise<CallToolResult>;

// Each tool's JSON Schema is what clients show the model and validate arguments against.
const tools: Tool[] = [
{tools},
];

function result(value: unknown): CallToolResult {{
  return {{ content: [{{ type: "text", text: JSON.stringify(value, null, 2) }}] }};
}}

function requireString(args: Args, name: string): string {{
  const value = args[name];
  if (typeof value !== "string" || value.length === 0) {{
    throw new McpError(ErrorCode.InvalidParams, `${{name}} must be a non-empty string`);
  }}
  return value;
}}

function optionalString(args: Args, name: string): string | undefined {{
  const value = args[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new McpError(ErrorCode.InvalidParams, `${{name}} must be a string`);
  return value;
}}

function optionalInteger(args: Args, name: string, fallback: number): number {{
  const value = args[name];
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value)) {{
    throw new McpError(ErrorCode.InvalidParams, `${{name}} must be an integer`);
  }}
  return value;
}}

// A Map, not an object: a tool named "constructor" must not find Object's.
const handlers = new Map<string, Handler>([
{chr(10).join(handlers)}
]);

const server = new Server({{ name: {json.dumps(name)}, version: "0.1.0" }}, {{ capabilities: {{ tools: {{}} }} }});

server.setRequestHandler(ListToolsRequestSchema, async () => ({{ tools }}));

server.setRequestHandler(CallToolRequestSchema, async (request) => {{
  const handler = handlers.get(request.params.name);
  if (!handler) {{
    throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${{request.params.name}}`);
  }}
  try {{
    return await handler(request.params.arguments ?? {{}});
  }} catch (error) {{
    if (error instanceof McpError) throw error;
    // A failure of the service is the tool's result, so the model can read it and recover.
    const message = error instanceof Error ? error.message : String(error);
    return {{ content: [{{ type: "text", text: message }}], isError: true }};
  }}
}});

async function main(): Promise<void> {{
{missing}  await server.connect(new StdioServerTransport());
  console.error({json.dumps(name + " running on stdio")});
}}

main().catch((error: unknown) => {{
  console.error(error);
  process.exit(1);
}});
"""


# --- Python --------------------------------------------------------------------------------------


def _py_param(param: str, prop: dict[str, Any], required: bool) -> str:
    if prop["type"] == "integer":
        bounds = f"ge={prop.get('minimum', 1)}, le={prop.get('maximum', 100)}, "
        return f"{param}: Annotated[int, Field({bounds}description={prop['description']!r})] = {prop.get('default', 0)}"
    if required:
        return f"{param}: Annotated[str, Field(min_length=1, description={prop['description']!r})]"
    return f"{param}: Annotated[str | None, Field(description={prop['description']!r})] = None"


def _python(*, name: str, description: str, prompt: str, specs: list[ToolSpec], env: str, service: str) -> str:
    target = f"the {service} API" if service else "your service"
    env_block = (
        f'# {env}: the key for {target}. Set it in the client\'s config ("env"), never in this file.\n'
        f'{env} = os.environ.get("{env}", "")\n'
        if env
        else "# Read settings from os.environ (set in the client's config), never hard-code a secret.\n"
    )
    functions = []
    for spec in specs:
        params = [(p, prop, p in spec.schema["required"]) for p, prop in spec.schema["properties"].items()]
        # Required parameters first: Python wants those without defaults before the others.
        params.sort(key=lambda item: not item[2])
        signature = ",\n    ".join(_py_param(p, prop, req) for p, prop, req in params)
        uses = f" (with {env})" if env else ""
        payload = ", ".join(f'"{p}": {p}' for p, _, _ in params)
        functions.append(
            f"@mcp.tool()\n"
            f"def {spec.name}(\n    {signature},\n) -> str:\n"
            f"    {json.dumps(spec.description)}\n"
            f"    # Call {target} here{uses} and return what it answers.\n"
            f'    return json.dumps({{"tool": "{spec.name}", {payload}}}, indent=2)\n'
        )
    missing = (
        f"    if not {env}:\n"
        f'        print("{env} is not set: the tools will fail until the client\'s config sets it.", file=sys.stderr)\n'
        if env
        else ""
    )
    return f'''"""{name}: {description}

Generated by MCPNest from: "{prompt}"
Run with `uv run --with 'mcp>=2.3,<3' server.py`; the client starts it and talks to it over stdio.
Unknown tools and arguments that do not match a tool's schema are answered by the SDK.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

from mcp.server import MCPServer
from pydantic import Field

{env_block}
mcp = MCPServer({json.dumps(name)}, instructions={json.dumps(description)})


{(chr(10) * 2).join(functions)}

if __name__ == "__main__":
{missing}    mcp.run()  # stdio
'''
