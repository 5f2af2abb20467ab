"""The catalog's own rules, and credentials that outlive neither their instance nor their key."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.hosting.models import AllowedImage, Instance
from apps.hosting.selectors import UNREADABLE, instance_logs
from apps.hosting.services import instance_deploy, instance_terminate

pytestmark = pytest.mark.django_db(transaction=True)


def _image(required_env_vars) -> AllowedImage:
    return AllowedImage(slug="x", name="X", image="local/x", mcp_command="x", required_env_vars=required_env_vars)


@pytest.mark.parametrize(
    ("declared", "complaint"),
    [
        ({"key": "A"}, "A list of"),
        (["API_KEY"], "an object with"),
        ([{"key": "api key"}], "environment variable name"),
        ([{"key": "PATH"}], "not one the bridge sets"),
        ([{"key": "MCP_COMMAND"}], "not one the bridge sets"),
        ([{"key": "A"}, {"key": "A"}], "listed twice"),
        ([{"key": "A", "type": "file"}], "text or password"),
        ([{"key": "A", "required": "yes"}], "true or false"),
        ([{"key": "A", "colour": "red"}], "an object with"),
    ],
)
def test_declared_credentials_must_be_well_formed(declared, complaint):
    with pytest.raises(ValidationError, match=complaint):
        _image(declared).full_clean()


def test_a_well_formed_declaration_passes():
    _image([{"key": "API_KEY", "label": "Key", "type": "password", "help": "", "required": True}]).full_clean()


def test_terminating_deletes_the_credentials(cast, keyed):
    instance = instance_deploy(access=cast.access(cast.alice), image=keyed, env={"NOTES_API_KEY": "k-123"})
    assert instance.status == Instance.Status.RUNNING, instance.error
    stopped = instance_terminate(access=cast.access(cast.alice), instance=instance)
    assert stopped.status == Instance.Status.STOPPED and stopped.env_encrypted == "" and stopped.env_names == []


def test_credentials_under_a_key_no_longer_configured_hide_the_logs_instead_of_failing(cast, keyed, settings):
    instance = instance_deploy(access=cast.access(cast.alice), image=keyed, env={"NOTES_API_KEY": "k-123"})
    assert instance.status == Instance.Status.RUNNING, instance.error
    # A key rotation that dropped the old key: the values cannot be read, so not masked either.
    settings.MCPNEST_ENCRYPTION_KEYS = ["vnWbq4v4nhX0dcv2sA6yQ4vPO0ZPBo1I3aH8XGmZXKw="]
    instance.refresh_from_db()
    assert instance_logs(access=cast.access(cast.alice), instance=instance).lines == [UNREADABLE]
    assert instance.env_names == ["(unreadable with the current keys)"]
