#!/usr/bin/env python
"""Django's command-line utility for MCPNest.

Works as written in a checkout that ``make run`` set up: outside the virtualenv it re-runs
itself with ``.venv/bin/python``, and without any configuration in the environment it uses
the same development settings as ``make run`` (DEBUG, the key kept in ``var/``). Missing
configuration is one line on stderr, never a traceback.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _in_venv() -> None:
    try:
        import django  # noqa: F401
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        if venv_python.exists() and not os.environ.get("MCPNEST_IN_VENV"):
            os.environ["MCPNEST_IN_VENV"] = "1"  # once: no loop if the virtualenv is broken
            os.execv(venv_python, [str(venv_python), *sys.argv])  # noqa: S606 - our own interpreter
        sys.exit("Django is not installed here: run `make run` (it creates .venv) or activate your virtualenv.")


if __name__ == "__main__":
    _in_venv()
    var = Path(os.environ.get("MCPNEST_VAR_DIR") or ROOT / "var")
    if "SECRET_KEY" not in os.environ and "DEBUG" not in os.environ and (var / "dev-secret-key").exists():
        os.environ["DEBUG"] = "1"  # the development checkout `make run` set up
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpnest.settings.base")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.exit(f"mcpnest: configuration error: {exc}")
