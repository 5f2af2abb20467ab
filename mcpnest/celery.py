"""The Celery app. Tasks are autodiscovered from each app's tasks.py; JSON only."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpnest.settings.base")

app = Celery("mcpnest")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
