"""``python -m postwarden_admin_api``: the same as ``postwarden-admin``."""

import sys

from .cli import main

sys.exit(main())
