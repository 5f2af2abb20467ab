"""`make run`'s offline catalogue: indexed once, left alone after."""

from io import StringIO

import pytest
from django.core.management import call_command

from apps.marketplace.models import Collection, Server, ServerVersion

pytestmark = pytest.mark.django_db


def test_the_bundled_catalogue_is_indexed_once_with_a_starter_pack():
    out = StringIO()
    call_command("seed_marketplace", stdout=out)
    assert "2794 registry versions" in out.getvalue()
    assert ServerVersion.objects.count() == 2794
    assert Server.objects.filter(source=Server.Source.REGISTRY).count() == 1108
    assert Server.objects.filter(source=Server.Source.AWESOME).exists()
    pack = Collection.objects.get(slug="starter", published=True)
    assert pack.items.count() == 3

    call_command("seed_marketplace", stdout=(again := StringIO()))
    assert "nothing to do" in again.getvalue() and Collection.objects.count() == 1
