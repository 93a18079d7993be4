"""``python -m biometrics``: the same as the ``biometrics`` console script."""

import sys

from .cli import main

sys.exit(main())
