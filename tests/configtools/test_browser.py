"""The config tools in a real Chromium: validate a config with a problem, fix it, compose two
marketplace servers found by typing, share the composition and open the link elsewhere."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from apps.configtools.models import Composition
from apps.marketplace.configs import install_configs
from apps.marketplace.services import registry_index
from tests.browser import BROWSER_TESTS
from tests.configtools.test_composer import _npm_with_secret, _remote_with_secret_header
from tests.marketplace.registry_server import OFFICIAL, SNAPSHOT, entries
from tests.portal.test_browser import _submit

SCREENSHOT = Path(tempfile.gettempdir()) / "configtools-compose.png"  # looked at by whoever changes the page

pytestmark = BROWSER_TESTS


@pytest.fixture
def two_servers(tmp_path) -> tuple[dict, dict]:
    items = [i for i in entries(SNAPSHOT) if i["_meta"][OFFICIAL]["isLatest"]]
    npm = next(i for i in items if _npm_with_secret(i["server"]))
    remote = next(i for i in items if _remote_with_secret_header(i["server"]))
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([npm, remote, *items[:30]]))
    assert registry_index(file=path).status == "done"
    return npm["server"], remote["server"]


def _wait(driver, condition, seconds: int = 15):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, ignored_exceptions=(WebDriverException,)).until(condition)


def _add_by_typing(driver, name: str) -> None:
    """Type part of the name in the search box; click "Add" on the result the script shows."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "compose-q")
    box.clear()
    box.send_keys(name.rsplit("/", 1)[-1])
    add = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f'#compose-results button[value="{name}"]'))
    _submit(driver, add)


def _config(driver, client: str) -> dict:
    from selenium.webdriver.common.by import By

    return json.loads(driver.find_element(By.ID, f"config-{client}").get_attribute("value"))


def test_validate_fix_compose_and_share(live_server, browser, two_servers):
    from selenium.webdriver.common.by import By

    npm, remote = two_servers
    base = live_server.url
    driver = browser()
    package = npm["packages"][0]
    secret = next(v["name"] for v in package["environmentVariables"] if v.get("isSecret"))
    key = install_configs(npm).launch.key

    # A Cursor config with a mistake: args as one string. The validator says where.
    broken = {
        "mcpServers": {
            key: {"command": "npx", "args": f"-y {package['identifier']}", "env": {secret: f"${{env:{secret}}}"}}
        }
    }
    driver.get(f"{base}/tools/validate/")
    field = driver.find_element(By.NAME, "config")
    field.send_keys(json.dumps(broken, indent=2))
    _submit(driver, driver.find_element(By.CSS_SELECTOR, "#validate-form button[type=submit]"))
    report = driver.find_element(By.ID, "report")
    assert "Errors found" in report.text and f"$.mcpServers.{key}.args" in report.text

    # Fixed: args as a list.
    fixed = {**broken, "mcpServers": {key: {**broken["mcpServers"][key], "args": ["-y", package["identifier"]]}}}
    field = driver.find_element(By.NAME, "config")
    field.clear()
    field.send_keys(json.dumps(fixed, indent=2))
    _submit(driver, driver.find_element(By.CSS_SELECTOR, "#validate-form button[type=submit]"))
    assert driver.find_element(By.CSS_SELECTOR, "#report h2").text == "No errors"

    # The composer: two servers found by typing, a placeholder renamed, shared.
    driver.find_element(By.LINK_TEXT, "Compose").click()
    _wait(driver, lambda d: d.find_element(By.ID, "compose-q"))
    _add_by_typing(driver, npm["name"])
    _add_by_typing(driver, remote["name"])
    names = [el.get_attribute("value") for el in driver.find_elements(By.CSS_SELECTOR, 'input[name="server"]')]
    assert names == [npm["name"], remote["name"]]
    placeholder = driver.find_element(By.NAME, f"v:{npm['name']}:{secret}")
    placeholder.clear()
    placeholder.send_keys("TEAM_KEY")
    driver.find_element(By.ID, "compose-title").send_keys("Our tools")
    _submit(driver, driver.find_element(By.CSS_SELECTOR, 'button[name="action"][value="share"]'))

    composition = Composition.objects.get()
    assert driver.current_url == f"{base}/tools/compose/{composition.share_id}/"
    share_url = driver.find_element(By.ID, "share-url").get_attribute("value")
    assert share_url == driver.current_url
    cursor = _config(driver, "cursor")
    assert set(cursor["mcpServers"]) == {key, install_configs(remote).launch.key}
    assert cursor["mcpServers"][key]["env"][secret] == "${env:TEAM_KEY}"

    driver.save_screenshot(str(SCREENSHOT))

    # Someone else opens the link: the same composition, ready to copy.
    other = browser()
    other.get(share_url)
    assert "Our tools" in other.find_element(By.ID, "shared-h").text
    for client in ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf"):
        assert _config(other, client) == _config(driver, client)

    # And the composed Cursor config passes the validator.
    other.get(f"{base}/tools/validate/")
    other.find_element(By.NAME, "config").send_keys(json.dumps(cursor, indent=2))
    _submit(other, other.find_element(By.CSS_SELECTOR, "#validate-form button[type=submit]"))
    assert other.find_element(By.CSS_SELECTOR, "#report h2").text == "No errors"
