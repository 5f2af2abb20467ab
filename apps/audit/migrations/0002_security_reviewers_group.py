"""The "Security reviewers" group: staff in it can read (and export) the audit trail, nothing else."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Security reviewers"
PERMISSIONS = ["view_auditevent", "view_toolcall", "view_auditcheckpoint"]


def forwards(apps, schema_editor):
    # Permissions are normally made after all migrations; make this app's now.
    config = apps.get_app_config("audit")
    config.models_module = True  # the migration-state stub lacks it; create_permissions checks it
    create_permissions(config, verbosity=0, apps=apps)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.set(Permission.objects.filter(content_type__app_label="audit", codename__in=PERMISSIONS))


def backwards(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(forwards, backwards)]
