#!/bin/sh
# `movierec` inside the images: the console script, without installing the package into the venv
# (the source is at /app on PYTHONPATH; no build backend is needed in the image).
exec /opt/venv/bin/python -m movierec.cli "$@"
