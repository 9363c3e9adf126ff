"""`python -m services.admin` is the operator CLI."""

import sys

from services.admin.cli import main

sys.exit(main())
