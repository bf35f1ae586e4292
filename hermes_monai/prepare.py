"""Command line: turn a public dataset folder into the bundle's datalist, or check a datalist.

Prepare (layout detected unless ``--layout`` is given; see :mod:`hermes_monai.data.builder`)::

    python -m hermes_monai.prepare /data/Dataset_BUSI_with_GT --preset paper --labels 144 --seed 0
    python -m hermes_monai.prepare /data/UDIAT --labels 40 --out /work/udiat/datalist.json
    python -m hermes_monai.prepare /data/BUS-BRA --labels 0.25          # a fraction of each class

Check (exit status 1 when anything is wrong; every problem named with its file)::

    python -m hermes_monai.prepare check /data/busi/datalist.json --num-cls-classes 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hermes_monai.data.builder import DEFAULT_BUDGET, PRESETS, prepare_dataset
from hermes_monai.data.checks import check_datalist, format_problems
from hermes_monai.data.layouts import LAYOUTS, LayoutError

__all__ = ["main", "main_check", "parse_budget"]


def parse_budget(text: str) -> int | float:
    """``"144"`` -> 144 labeled images; ``"0.25"`` or ``"25%"`` -> that share of each class's train part."""
    t = text.strip()
    try:
        if t.endswith("%"):
            return float(t[:-1]) / 100.0
        return int(t) if t.isdigit() else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"label budget must be a count or a fraction, got '{text}'"
        ) from None


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hermes_monai.prepare check", description="Validate a datalist."
    )
    p.add_argument("datalist", help="datalist JSON")
    p.add_argument("--base-dir", default=None, help="folder for relative paths (default: the datalist's)")
    p.add_argument("--num-cls-classes", type=int, default=None, help="class labels must be < this")
    p.add_argument("--no-unlabeled", action="store_true", help="allow an empty unlabeled split (supervised)")
    p.add_argument(
        "--modalities",
        default="US",
        help="comma-separated DICOM modalities accepted for images, or 'any' (default: US)",
    )
    return p


def main_check(argv: Sequence[str] | None = None) -> int:
    """``check`` sub-command: print every problem; 0 when there is none (warnings allowed), else 1."""
    args = _check_parser().parse_args(argv)
    modalities = (
        None if args.modalities.lower() == "any" else tuple(m for m in args.modalities.split(",") if m)
    )
    problems = check_datalist(
        args.datalist,
        args.base_dir,
        num_cls_classes=args.num_cls_classes,
        require_unlabeled=not args.no_unlabeled,
        reader_kwargs={"modalities": modalities},
    )
    errors = sum(p.severity == "error" for p in problems)
    if problems:
        print(format_problems(problems))
    print(
        f"{args.datalist}: {errors} error(s), {len(problems) - errors} warning(s)",
        file=sys.stderr if errors else sys.stdout,
    )
    return 1 if errors else 0


def _prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hermes_monai.prepare",
        description="Write the datalist (labeled / unlabeled / validation / test) of a dataset folder. "
        "Use `python -m hermes_monai.prepare check DATALIST` to validate one.",
    )
    p.add_argument("root", help="dataset folder (BUSI, UDIAT, BUS-BRA, TN3K, generic images/+masks/, DICOM)")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default=None, help="force a layout (default: detect)")
    p.add_argument("--out", default=None, help="datalist path or folder (default: <root>/datalist.json)")
    p.add_argument(
        "--labels",
        type=parse_budget,
        default=None,
        help=f"label budget: a count (N/k per class) or a fraction of each class's train part "
        f"(default {DEFAULT_BUDGET})",
    )
    p.add_argument("--classes", default=None, help="comma-separated class names to keep, in index order")
    p.add_argument("--test-fraction", type=float, default=0.3, help="test share of each class (default 0.3)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of the train part")
    p.add_argument("--seed", type=int, default=0, help="fixes every random choice (default 0)")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="paper: benign + malignant, 70/30 per class, N labels = N/2 per class",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``check ...`` validates a datalist, anything else prepares one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check":
        return main_check(argv[1:])
    args = _prepare_parser().parse_args(argv)
    try:
        prepare_dataset(
            args.root,
            out=args.out,
            layout=args.layout,
            budget=args.labels if args.labels is not None else DEFAULT_BUDGET,
            classes=args.classes.split(",") if args.classes else None,
            test_fraction=args.test_fraction,
            val_fraction=args.val_fraction,
            seed=args.seed,
            preset=args.preset,
        )
    except (LayoutError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
