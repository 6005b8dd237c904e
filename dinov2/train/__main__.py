"""``python -m dinov2.train``: see :mod:`dinov2.train.train`."""

import sys

from dinov2.train.train import main

sys.exit(main())
