"""``python -m data_prep.vaani``: the same command as ``python data_prep/vaani.py``."""

import sys

from data_prep.vaani.cli import main

if __name__ == "__main__":
    sys.exit(main())
