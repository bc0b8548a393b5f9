"""``python -m stratos_cli.local.serving``: one endpoint server in the foreground (what the registry spawns)."""

import sys

from stratos_cli.local.serving.server import main

sys.exit(main())
