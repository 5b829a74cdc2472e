"""`python -m slipway_cli`, the same as the `slipway` command."""

import sys

from slipway_cli.main import main

sys.exit(main())
