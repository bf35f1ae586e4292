"""Command line of the PACS runner.

    python -m hermes_monai.pacs --config bundle/configs/pacs.yaml --once     # one pass, then exit
    python -m hermes_monai.pacs --config bundle/configs/pacs.yaml            # a pass every poll_interval_s
    python -m hermes_monai.pacs --config bundle/configs/pacs.yaml --listen   # storage SCP, results forwarded
    ... --set source.url=http://pacs:8042/dicom-web --set bundle.checkpoint=bundle/models/model.ts

Exit status 1 when any instance failed (each is logged with its SOP Instance UID and reason), 0 otherwise.
SIGTERM stops the runner like Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from hermes_monai.pacs.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hermes_monai.pacs", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="settings YAML (e.g. bundle/configs/pacs.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass over the source, then exit")
    mode.add_argument("--listen", action="store_true", help="storage SCP: process instances sent to it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("highdicom", "dicomweb_client", "pynetdicom"):
        logging.getLogger(chatty).setLevel(logging.WARNING)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    from hermes_monai.pacs.runner import PacsRunner

    runner = PacsRunner(load_config(args.config, args.set))
    try:
        if args.listen:
            summary = runner.listen()
        else:
            summary = runner.poll(passes=1 if args.once else None)
    except KeyboardInterrupt:
        logging.getLogger("hermes_monai.pacs").info("stopped")
        return 0
    finally:
        runner.close()
        signal.signal(signal.SIGTERM, previous)
    if summary.failed:
        lines = "\n".join(f"  {uid}: {reason}" for uid, reason in summary.failed.items())
        print(f"{len(summary.failed)} instance(s) failed:\n{lines}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
