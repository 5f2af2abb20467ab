"""Wiring of the shared services: cache, channel layers, the ASGI router and Celery.

Tests marked ``redis`` run against the real Redis at REDIS_URL (CI sets it) and skip with
the reason otherwise; the embedded defaults are tested without it.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from celery.beat import ScheduleEntry
from celery.schedules import crontab
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from mcpnest.celery import app as celery_app

REDIS_LAYER = "channels_redis.core.RedisChannelLayer"


async def round_trip(layer) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "deploy.log", "line": "pulling image"})
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "deploy.log", "line": "pulling image"}
    group = f"test-{uuid.uuid4().hex}"
    await layer.group_add(group, channel)
    await layer.group_send(group, {"type": "deploy.done", "ok": True})
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "deploy.done", "ok": True}
    await layer.group_discard(group, channel)


# --- Cache -----------------------------------------------------------------------------


@pytest.mark.redis
def test_with_redis_url_the_cache_is_redis_and_shared():
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    key = f"wiring-{uuid.uuid4().hex}"
    cache.set(key, {"n": 1}, 30)
    assert cache.get(key) == {"n": 1}
    # A value written by one process is seen by another (a separate client = another worker).
    other_worker = RedisCache(os.environ["REDIS_URL"], {})
    assert other_worker.get(key) == {"n": 1}
    cache.delete(key)
    assert cache.get(key) is None


# --- Channel layers ----------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_channel_layer_round_trip():
    config = {"default": {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [os.environ["REDIS_URL"]]}}}
    with override_settings(CHANNEL_LAYERS=config):
        layer = get_channel_layer()
        assert type(layer).__module__ + "." + type(layer).__name__ == REDIS_LAYER
        try:
            await round_trip(layer)
        finally:
            await layer.close_pools()


@pytest.mark.redis
def test_with_redis_url_the_configured_layer_is_redis():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == REDIS_LAYER
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"] == {"hosts": [os.environ["REDIS_URL"]]}


async def test_in_memory_channel_layer_round_trip():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        layer = get_channel_layer()
        assert isinstance(layer, InMemoryChannelLayer)
        await round_trip(layer)


# --- ASGI ------------------------------------------------------------------------------------


# Channels closes stale DB connections around each request, so these touch the database layer.
@pytest.mark.django_db(transaction=True)
async def test_asgi_application_serves_http():
    from mcpnest.asgi import application

    communicator = HttpCommunicator(application, "GET", "/accounts/login/", headers=[(b"host", b"testserver")])
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 200
    assert b"csrfmiddlewaretoken" in response["body"]


@pytest.mark.django_db(transaction=True)
async def test_asgi_websockets_refuse_a_foreign_origin():
    from mcpnest.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/anything/", headers=[(b"host", b"testserver"), (b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected is False
    await communicator.disconnect()


# --- Celery ------------------------------------------------------------------------------------


def test_celery_has_the_retention_task_and_its_beat_entry():
    celery_app.loader.import_default_modules()  # what a worker does at start-up (autodiscovery)
    assert "apps.audit.tasks.apply_retention" in celery_app.tasks
    entry = celery_app.conf.beat_schedule["audit-retention"]
    assert entry["task"] in celery_app.tasks
    assert isinstance(entry["schedule"], crontab)
    assert 0 < entry["options"]["expires"] <= 24 * 60 * 60  # a missed nightly run is dropped, not piled up
    scheduled = ScheduleEntry(name="audit-retention", app=celery_app, **entry)
    assert scheduled.options["expires"] == entry["options"]["expires"]
    assert celery_app.conf.task_serializer == "json" and celery_app.conf.accept_content == ["json"]


def test_without_redis_celery_runs_tasks_in_process():
    if os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is set: Celery uses the Redis broker")
    assert celery_app.conf.task_always_eager is True and celery_app.conf.broker_url == "memory://"


@pytest.mark.redis
def test_with_redis_url_celery_uses_the_redis_broker():
    from mcpnest.settings import base

    assert celery_app.conf.broker_url == os.environ["REDIS_URL"]
    # The deployed settings queue tasks for a worker; only the test settings run them in-process.
    assert base.CELERY_TASK_ALWAYS_EAGER is False
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.connected
