"""``python -m hookserve.manager RUN_DIR [MASTER_PID]``: the model manager's process."""

import sys

from hookserve.manager.main import main

sys.exit(main())
