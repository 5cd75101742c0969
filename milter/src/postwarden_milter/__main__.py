"""`python -m postwarden_milter`: the same as the `postwarden-milter` command."""

import sys

from .cli import main

sys.exit(main())
