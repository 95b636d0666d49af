"""Vaani speech data -> speaker-disjoint manifests of 16 kHz mono FLAC: the command line script.

Run ``python data_prep/vaani.py --help`` (or ``python -m data_prep.vaani --help``).  The code is the
package ``data_prep/vaani/``; its docstring describes the sources, the processing and the outputs.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python data_prep/vaani.py`: make `data_prep` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# `data_prep.vaani` is the package data_prep/vaani/, not this file: a package wins over a module of the same name.
from data_prep.vaani.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
