"""`python -m salesforce_emulator`: the same as the `salesforce-emulator` command."""

import sys

from .cli import main

sys.exit(main())
