"""A real Django project for tests, written to a folder and set up by Django itself: its
settings, a tenancy app of its own (platforms and memberships, as a Django shop has them),
DRF's token app, `migrate`, and users with tokens created through the ORM.  Its ASGI module
puts the metadata middleware in front of Django's ASGI app, as docs/auth-django.md says.

Django runs in subprocesses only: the test process never configures Django settings, and
the backend under test never imports Django."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = '''
import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes", "django.contrib.auth",
    "rest_framework", "rest_framework.authtoken", "tenancy",
]
ROOT_URLCONF = "dproj.urls"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
url = urlsplit(os.environ["DATABASE_URL"])
if url.scheme == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": url.path[1:]}}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": url.path[1:],
        "USER": unquote(url.username or ""), "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname, "PORT": url.port or 5432,
    }}
'''

URLS = '''
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.response import Response


@api_view(["GET"])
def whoami(request):
    return Response({"username": request.user.username})


urlpatterns = [path("api/whoami/", whoami)]
'''

ASGI = '''
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dproj.settings")

from django.core.asgi import get_asgi_application

from starlette_platform_metadata import DatabaseStore, PlatformMetadataMiddleware
from starlette_platform_metadata.drf_auth import DRFTokenBackend

DATABASE_URL = os.environ["DATABASE_URL"]
# The project's own tenancy tables: no row, no platform; is_admin NULL, not a member.
ACCESS = """
SELECT m.is_admin, EXISTS (
    SELECT 1 FROM tenancy_membership tm JOIN auth_user tu ON tu.id = tm.user_id
    WHERE tm.platform_id = p.id AND tu.username = $3 AND tu.is_active)
FROM tenancy_platform p
LEFT JOIN tenancy_membership m ON m.platform_id = p.id AND m.user_id = $2
WHERE p.key = $1
"""

application = PlatformMetadataMiddleware(
    get_asgi_application(),
    auth=DRFTokenBackend(DATABASE_URL, access_query=ACCESS),
    store=DatabaseStore(DATABASE_URL),
    path="/api/core/users/platform-metadata/",
)
'''

MODELS = '''
from django.conf import settings
from django.db import models


class Platform(models.Model):
    key = models.CharField(max_length=100, unique=True)


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE)
    is_admin = models.BooleanField(default=False)

    class Meta:
        unique_together = [("user", "platform")]
'''

MIGRATION = '''
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [migrations.swappable_dependency(settings.AUTH_USER_MODEL)]
    operations = [
        migrations.CreateModel(name="Platform", fields=[
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
            ("key", models.CharField(max_length=100, unique=True)),
        ]),
        migrations.CreateModel(name="Membership", fields=[
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
            ("is_admin", models.BooleanField(default=False)),
            ("platform", models.ForeignKey(on_delete=models.deletion.CASCADE, to="tenancy.platform")),
            ("user", models.ForeignKey(on_delete=models.deletion.CASCADE, to=settings.AUTH_USER_MODEL)),
        ], options={"unique_together": {("user", "platform")}}),
    ]
'''

# Users as a Django shop has them, made with the ORM; prints each one's DRF token as JSON.
SEED = '''
import json
import django

django.setup()

from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from tenancy.models import Membership, Platform

acme = Platform.objects.create(key="acme-corp")
Platform.objects.create(key="beta")
keys = {}
for name, admin, active in [("alice", False, True), ("bob", False, True), ("boss", True, True),
                            ("carl", False, False), ("dave", False, True)]:
    user = User.objects.create_user(name, is_active=active)
    Membership.objects.create(user=user, platform=acme, is_admin=admin)
    keys[name] = Token.objects.create(user=user).key
User.objects.get(username="dave").delete()  # the host deletes a user: its token goes with it
print(json.dumps(keys))
'''


def environment(folder: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="dproj.settings",
        PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]),
    )
    return env


def create(folder: Path, database_url: str) -> dict[str, str]:
    """Write the project to `folder`, `migrate` its database, create its users; their
    tokens by username (dave's was deleted with dave)."""
    files = {
        "dproj/__init__.py": "", "dproj/settings.py": SETTINGS, "dproj/urls.py": URLS,
        "dproj/asgi.py": ASGI, "tenancy/__init__.py": "", "tenancy/models.py": MODELS,
        "tenancy/migrations/__init__.py": "", "tenancy/migrations/0001_initial.py": MIGRATION,
        "seed.py": SEED,
    }  # fmt: skip
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    env = environment(folder, database_url)
    run = {"cwd": folder, "env": env, "capture_output": True, "text": True, "timeout": 120,
           "check": False}  # fmt: skip
    migrated = subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], **run)  # type: ignore[call-overload]
    assert migrated.returncode == 0, migrated.stderr
    seeded = subprocess.run([sys.executable, "seed.py"], **run)  # type: ignore[call-overload]
    assert seeded.returncode == 0, seeded.stderr
    keys: dict[str, str] = json.loads(seeded.stdout.strip().splitlines()[-1])
    return keys
