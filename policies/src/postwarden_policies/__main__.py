"""`python -m postwarden_policies`, the `postwarden-policy` command where no console
script is installed (a CI job that sets PYTHONPATH, as the milter's and admin's run)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
