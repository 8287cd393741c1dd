"""Gunicorn config module, for running hookserve with plain gunicorn::

    HOOKSERVE_ARGS="--models mlp=mlp.mar --model-store store" \
        gunicorn -c python:hookserve.gunicorn_conf 'hookserve.app:create_app()'

``$HOOKSERVE_ARGS`` takes the flags of ``hookserve serve``; the settings below are the
ones ``hookserve serve`` uses.
"""

import os
import shlex

from hookserve.cli import serve_config
from hookserve.server import gunicorn_settings

globals().update(gunicorn_settings(serve_config(shlex.split(os.environ.get("HOOKSERVE_ARGS", "")))))
