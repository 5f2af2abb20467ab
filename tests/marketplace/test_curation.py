"""Curation services: installs counted once per visitor and day under an hourly limit,
trending with a week's half-life, and staff verification of publishers (audited)."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.errors import Forbidden, RuleViolation
from apps.marketplace.models import Collection, FeaturedServer, Install, Publisher, Server
from apps.marketplace.services import curation
from apps.marketplace.services.curation import (
    InstallRateLimited,
    install_record,
    publisher_unverify,
    publisher_verify,
    trending_refresh,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch):
    """Each test its own rate-limit counters (the cache may be a Redis shared with other runs)."""
    monkeypatch.setattr(curation, "RATE_KEY", f"test-{uuid.uuid4().hex}:" + curation.RATE_KEY)


def make_server(name: str, *, namespace: str = "io.github.acme", **fields) -> Server:
    publisher, _ = Publisher.objects.get_or_create(namespace=namespace)
    return Server.objects.create(name=f"{namespace}/{name}", publisher=publisher, **fields)


def installs(server: Server, *, days_ago: int, count: int) -> None:
    day = TODAY - datetime.timedelta(days=days_ago)
    Install.objects.bulk_create(
        [Install(server=server, via="cursor", visitor=f"v{days_ago}-{n}", day=day) for n in range(count)]
    )


def test_an_install_counts_once_per_visitor_and_day():
    weather = make_server("weather")
    maps = make_server("maps")
    # Every day is given: the test must not depend on when it runs (it once ran across midnight).
    assert install_record(server=weather, via="cursor", visitor_key="ip:203.0.113.7", day=TODAY)
    # Another client, the same visitor and day: a reload or a second button, not a second install.
    assert not install_record(server=weather, via="vscode", visitor_key="ip:203.0.113.7", day=TODAY)
    assert install_record(server=maps, via="cursor", visitor_key="ip:203.0.113.7", day=TODAY)
    assert install_record(server=weather, via="cursor", visitor_key="ip:198.51.100.1", day=TODAY)
    tomorrow = TODAY + datetime.timedelta(days=1)
    assert install_record(server=weather, via="cursor", visitor_key="ip:203.0.113.7", day=tomorrow)
    assert Install.objects.filter(server=weather).count() == 3
    with pytest.raises(RuleViolation, match="Unknown install channel"):
        install_record(server=weather, via="carrier-pigeon", visitor_key="ip:203.0.113.7")


def test_the_visitor_is_stored_as_a_keyed_hash_never_the_address():
    server = make_server("weather")
    install_record(server=server, via="cursor", visitor_key="ip:203.0.113.7")
    install_record(server=server, via="cursor", visitor_key="user:42")
    stored = set(Install.objects.values_list("visitor", flat=True))
    assert len(stored) == 2
    for visitor in stored:
        assert "203.0.113" not in visitor and visitor != "42" and len(visitor) == 32
        int(visitor, 16)  # hex
    assert curation.visitor_hash("ip:203.0.113.7") in stored
    # Keyed: without SECRET_KEY nobody recomputes it (a plain SHA-256 would be guessable).
    import hashlib

    assert hashlib.sha256(b"ip:203.0.113.7").hexdigest()[:32] not in stored


def test_a_visitor_past_the_hourly_limit_is_refused_others_are_not(monkeypatch):
    monkeypatch.setattr(curation, "INSTALLS_PER_HOUR", 3)
    servers = [make_server(f"s{n}") for n in range(5)]
    for server in servers[:3]:
        assert install_record(server=server, via="cursor", visitor_key="ip:203.0.113.7")
    with pytest.raises(InstallRateLimited, match="More than 3 installs in an hour"):
        install_record(server=servers[3], via="cursor", visitor_key="ip:203.0.113.7")
    assert not Install.objects.filter(server=servers[3]).exists()
    assert install_record(server=servers[3], via="cursor", visitor_key="ip:198.51.100.1")


def test_trending_is_the_week_and_a_decayed_four_weeks():
    fresh = make_server("fresh")  # 10 today
    steady = make_server("steady")  # 4 today, 4 a week ago, 4 two weeks ago
    old = make_server("old")  # 40 three weeks ago, 100 five weeks ago (out of the window)
    make_server("quiet", installs_week=9, trending=3.5)  # stale values, no installs now
    untouched = make_server("untouched")
    installs(fresh, days_ago=0, count=10)
    for days in (0, 7, 14):
        installs(steady, days_ago=days, count=4)
    installs(old, days_ago=21, count=40)
    installs(old, days_ago=35, count=100)
    installs(fresh, days_ago=-1, count=5)  # tomorrow, for this ``now``: not yet

    assert trending_refresh(now=NOW) == 4  # untouched keeps its zeros, unwritten
    values = {s.name.split("/")[1]: (s.installs_week, s.trending) for s in Server.objects.all()}
    assert values["fresh"] == (10, 10.0)
    assert values["steady"] == (4, pytest.approx(4 + 4 * 0.5 + 4 * 0.25))
    assert values["old"] == (0, pytest.approx(40 * 0.125))
    assert values["quiet"] == (0, 0.0)
    assert values["untouched"] == (0, 0.0)
    # A six-day-old install is still this week; a seven-day-old one is not.
    installs(untouched, days_ago=6, count=1)
    installs(untouched, days_ago=7, count=1)
    assert trending_refresh(now=NOW) == 1
    untouched.refresh_from_db()
    assert untouched.installs_week == 1
    assert untouched.trending == pytest.approx(0.5 ** (6 / 7) + 0.5, abs=1e-4)
    assert trending_refresh(now=NOW) == 0  # nothing changed, nothing written


def test_the_command_refreshes_trending(capsys):
    server = make_server("weather")
    Install.objects.create(server=server, via="cursor", visitor="v", day=timezone.localdate())
    call_command("refresh_trending")
    server.refresh_from_db()
    assert server.installs_week == 1 and server.trending == 1.0
    assert "1 server" in capsys.readouterr().out


def test_staff_verify_and_unverify_a_publisher_with_an_audit_row():
    staff = UserFactory(email="root@example.com", is_staff=True)
    publisher = Publisher.objects.create(namespace="com.example")
    assert publisher_verify(publisher=publisher, actor=staff)
    publisher.refresh_from_db()
    assert publisher.verification == Publisher.Verification.STAFF and publisher.verified_by == staff
    assert publisher.verified_at is not None
    assert not publisher_verify(publisher=publisher, actor=staff)  # already: no second row

    assert publisher_unverify(publisher=publisher, actor=staff)
    publisher.refresh_from_db()
    # Who ruled, and when, stays: indexing must not re-verify what staff withdrew.
    assert not publisher.verified and publisher.verified_at is not None and publisher.verified_by == staff
    assert not publisher_unverify(publisher=publisher, actor=staff)

    events = list(AuditEvent.objects.filter(target_type="publisher").order_by("pk"))
    assert [e.action for e in events] == ["publisher.verified", "publisher.unverified"]
    assert all(e.workspace_id is None and e.actor == staff and e.target_repr == "com.example" for e in events)
    assert events[1].metadata == {"verification": ["staff", ""]}


def test_a_namespace_proven_to_the_registry_stays_so_and_only_staff_verify():
    staff = UserFactory(email="root@example.com", is_staff=True)
    proven = Publisher.objects.create(namespace="io.github.acme", verification=Publisher.Verification.NAMESPACE)
    assert not publisher_verify(publisher=proven, actor=staff)
    proven.refresh_from_db()
    assert proven.verification == Publisher.Verification.NAMESPACE

    member = UserFactory(email="carol@example.com")
    other = Publisher.objects.create(namespace="com.example")
    with pytest.raises(Forbidden):
        publisher_verify(publisher=other, actor=member)
    with pytest.raises(Forbidden):
        publisher_unverify(publisher=proven, actor=member)
    assert not AuditEvent.objects.filter(target_type="publisher").exists()


# --- Admin: curation through the services ----------------------------------------------------


@pytest.fixture
def staff_client(client):
    root = UserFactory(email="root@example.com", is_staff=True, is_superuser=True)
    client.force_login(root)
    client.root = root
    return client


def test_staff_verify_a_publisher_from_the_admin(staff_client):
    publisher = Publisher.objects.create(namespace="com.example")
    url = reverse("admin:marketplace_publisher_changelist")
    done = staff_client.post(url, {"action": "verify", "_selected_action": [publisher.pk]}, follow=True)
    assert "Verified: com.example." in done.content.decode()
    publisher.refresh_from_db()
    assert publisher.verification == "staff" and publisher.verified_by == staff_client.root
    staff_client.post(url, {"action": "unverify", "_selected_action": [publisher.pk]})
    publisher.refresh_from_db()
    assert not publisher.verified
    assert AuditEvent.objects.filter(target_type="publisher").count() == 2


def test_the_server_of_the_week_starts_on_a_monday(staff_client):
    server = make_server("weather")
    url = reverse("admin:marketplace_featuredserver_add")
    tuesday = datetime.date(2026, 12, 1)
    refused = staff_client.post(url, {"week": tuesday.isoformat(), "server": server.pk, "blurb": ""})
    assert refused.status_code == 200 and "Pick the Monday of the week." in refused.content.decode()
    assert staff_client.post(url, {"week": "2026-11-30", "server": server.pk, "blurb": "Hi"}).status_code == 302
    assert FeaturedServer.objects.get().week == datetime.date(2026, 11, 30)


def test_staff_curate_a_collection_with_its_servers(staff_client, django_assert_max_num_queries):
    servers = [make_server(f"s{n}") for n in range(3)]
    data = {
        "title": "Starter pack",
        "slug": "starter",
        "kind": "starter-pack",
        "description": "",
        "position": "0",
        "published": "on",
        "items-TOTAL_FORMS": "3",
        "items-INITIAL_FORMS": "0",
        "items-MIN_NUM_FORMS": "0",
        "items-MAX_NUM_FORMS": "1000",
    }
    for n, server in enumerate(servers):
        data |= {f"items-{n}-server": server.pk, f"items-{n}-position": n, f"items-{n}-note": f"because {n}"}
    added = staff_client.post(reverse("admin:marketplace_collection_add"), data)
    assert added.status_code == 302, added.content.decode()[:2000]
    collection = Collection.objects.get(slug="starter")
    assert list(collection.items.values_list("server__name", flat=True)) == [s.name for s in servers]
    with django_assert_max_num_queries(12):
        listing = staff_client.get(reverse("admin:marketplace_collection_changelist"))
    assert listing.status_code == 200 and "Starter pack" in listing.content.decode()
