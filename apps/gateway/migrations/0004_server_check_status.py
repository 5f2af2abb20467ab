# Checks and approvals become queued operations recorded on the server (issue 8).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0003_server_checks_and_pin_rejection'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='upstreamserver',
            name='check_kind',
            field=models.CharField(blank=True, choices=[('approve', 'Approval'), ('health', 'Health check')], max_length=10),
        ),
        migrations.AddField(
            model_name='upstreamserver',
            name='check_state',
            field=models.CharField(blank=True, choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], max_length=10),
        ),
        migrations.AddField(
            model_name='upstreamserver',
            name='check_requested_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='upstreamserver',
            name='check_requested_ip',
            field=models.GenericIPAddressField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='upstreamserver',
            name='check_started_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='upstreamserver',
            name='check_finished_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='upstreamserver',
            name='check_error',
            field=models.CharField(blank=True, max_length=300),
        ),
    ]
