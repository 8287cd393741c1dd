"""``python -m hookserve.plugins.demo FOLDER``: build the demo archive into FOLDER."""

import sys
from pathlib import Path

from hookserve.plugins.demo.archive import build_demo_archive

build_demo_archive(Path(sys.argv[1]))
