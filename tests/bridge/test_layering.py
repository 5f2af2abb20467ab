"""``bridge`` stands alone in its container: it must not import Django."""

from __future__ import annotations

import subprocess
import sys

from tests.bridge.conftest import ROOT


def test_the_bridge_imports_no_django():
    probe = "import sys, bridge.__main__; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    # A fresh interpreter (this one has Django loaded), so the check sees what the bridge pulls in, transitively.
    shown = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)  # noqa: S603
    assert shown.stdout.strip() == "[]"
