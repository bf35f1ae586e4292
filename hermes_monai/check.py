"""Command line: ``python -m hermes_monai.check DATALIST [--num-cls-classes N]`` validates a datalist
(the same as ``python -m hermes_monai.prepare check``; see :mod:`hermes_monai.data.checks`)."""

from __future__ import annotations

import sys

from hermes_monai.prepare import main_check

if __name__ == "__main__":
    sys.exit(main_check())
