"""What a generator produces, whichever engine: a scaffold, and the pieces around its code
that are the same for both engines (the install snippet, the client configs)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from apps.marketplace import configs

LANGUAGES = ("typescript", "python")
PYTHON_SDK = "mcp>=2.3,<3"  # the API the Python scaffolds use (MCPServer), as checked with ours
SDK_VERSION = "1.32.2"  # @modelcontextprotocol/sdk, as apps/configtools/scaffold/package.json pins it

# The files a TypeScript scaffold is built with, shown in the install snippet and used by the check.
TS_CONFIG: dict[str, Any] = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "Node16",
        "moduleResolution": "Node16",
        "outDir": "build",
        "rootDir": "src",
        "strict": True,
        "esModuleInterop": True,
        "skipLibCheck": True,
        "types": ["node"],
    },
    "include": ["src/**/*.ts"],
}


def package_json(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": "0.1.0",
        "type": "module",
        "bin": {name: "build/index.js"},
        "scripts": {"build": "tsc", "start": "node build/index.js"},
        "dependencies": {"@modelcontextprotocol/sdk": f"^{SDK_VERSION}", "zod": "^4.0.0"},
        "devDependencies": {"typescript": "^5.9.3", "@types/node": "^22.0.0"},
    }


class Scaffold(BaseModel):
    """A generated MCP server: its name (a config key), what it does, its single source file
    (``src/index.ts`` or ``server.py``), how to install it, and the environment variables its
    code reads (placeholders only)."""

    name: str = Field(min_length=1, max_length=60)
    description: str = Field(max_length=1000)
    language: str
    code: str = Field(min_length=1, max_length=60_000)
    env: list[str] = Field(default_factory=list, max_length=10)
    install: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return configs.entry_key(value.lower())

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[str]) -> list[str]:
        return [name for name in value if re.fullmatch(r"[A-Z_][A-Z0-9_]{0,63}", name)]

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}")
        return value

    def with_install(self) -> Scaffold:
        return self.model_copy(update={"install": install_snippet(self)})

    @property
    def filename(self) -> str:
        return "src/index.ts" if self.language == "typescript" else "server.py"


def install_snippet(scaffold: Scaffold) -> dict[str, Any]:
    """How to build it and each client's config for it, from ``apps.marketplace.configs`` as
    for a marketplace server (every variable a placeholder in the client's syntax)."""
    where = f"/path/to/{scaffold.name}"
    env = tuple(configs.Variable(name=name, secret=True, required=True) for name in scaffold.env)
    if scaffold.language == "typescript":
        launch = configs.Launch(key=scaffold.name, command="node", args=(f"{where}/build/index.js",), env=env)
        steps = [
            f"mkdir -p {scaffold.name}/src && cd {scaffold.name}",
            "# save the code as src/index.ts, and package.json and tsconfig.json below",
            "npm install",
            "npm run build",
        ]
        files = {"package.json": package_json(scaffold.name), "tsconfig.json": TS_CONFIG}
    else:
        launch = configs.Launch(
            key=scaffold.name, command="uv", args=("run", "--with", PYTHON_SDK, f"{where}/server.py"), env=env
        )
        steps = [
            f"mkdir -p {scaffold.name} && cd {scaffold.name}",
            "# save the code as server.py",
            f"uv run --with '{PYTHON_SDK}' server.py",
        ]
        files = {}
    return {
        "steps": steps,
        "files": files,
        "configs": {
            "claude-desktop": configs.claude_desktop(launch),
            "claude-code": configs.claude_code_json(launch),
            "cursor": configs.cursor(launch),
            "vscode": configs.vscode(launch),
            "windsurf": configs.windsurf(launch),
        },
        "claude_code_command": configs.claude_code_command(launch),
    }
