#!/usr/bin/env python
"""Django's command-line utility for Slipway."""

import os
import sys
from pathlib import Path


def main() -> None:
    # `platform/` holds the `config` package but is not itself a package (it would shadow
    # the standard library's `platform`), so it goes on the import path here.
    sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
