"""Trainer batch-job entry point: ``python services/trainer/main.py [train options]``.

The same as ``roadseg train ...``; kept so every service has a ``main.py`` (the container uses the
``roadseg`` entrypoint directly).
"""

import sys

from roadseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
