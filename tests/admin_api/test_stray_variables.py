"""A POSTWARDEN_ variable that looks like a misspelt setting of the admin service is
warned about at start, as the milter warns about its own; the milter's settings, read
from the same environment file, are not (tests/milter/test_settings.py: the other way
round)."""

from __future__ import annotations

import os
import subprocess
import sys

from postwarden_admin_api.settings import stray_variables
from postwarden_milter.settings import SETTING_NAMES as MILTER_SETTINGS
from tests.fixtures.adminapp import TEST_SECRET_KEY
from tests.fixtures.ports import free_port

MISSPELT = {"POSTWARDEN_REQUESTS_PER_MINUT": "60", "POSTWARDEN_WEBHOOK_TIMEOUT_SECOND": "5"}
TOLD = [
    "POSTWARDEN_REQUESTS_PER_MINUT is not an admin service setting, ignored "
    "(did you mean POSTWARDEN_REQUESTS_PER_MINUTE?)",
    "POSTWARDEN_WEBHOOK_TIMEOUT_SECOND is not an admin service setting, ignored "
    "(did you mean POSTWARDEN_WEBHOOK_TIMEOUT_SECONDS?)",
]


def test_a_misspelt_variable_is_told_and_the_milters_are_not() -> None:
    shared = {f"POSTWARDEN_{name.upper()}": "x" for name in MILTER_SETTINGS}
    environ = {**shared, **MISSPELT, "POSTWARDEN_CONFIG": "/etc/postwarden/admin.yaml",
               "POSTWARDEN_API_KEY": "k", "POSTWARDEN_LISTEN": "127.0.0.1:8025",
               "PATH": "/usr/bin"}
    assert stray_variables(environ) == TOLD


def test_serve_warns_about_a_misspelt_variable_before_it_starts() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {**MISSPELT, "POSTWARDEN_SPOOL_DIR": "/var/lib/postwarden/spool",
            # Nothing listens there: serve stops once it has warned.
            "POSTWARDEN_DATABASE_URL": f"postgresql://postwarden@127.0.0.1:{free_port()}/pw",
            "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY,
            "POSTWARDEN_LISTEN": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([sys.executable, "-m", "postwarden_admin_api", "serve"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    warned = [line.split(" WARNING postwarden_admin_api.cli ", 1)[1]
              for line in done.stderr.splitlines() if " WARNING " in line]
    assert warned == TOLD
    assert done.returncode == 1
