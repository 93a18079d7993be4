"""``python -m benchmarks``: run every benchmark suite and print markdown tables."""

import argparse
import sys

from benchmarks import exporter, http_idle, process, segments, sensors, ship, web
from benchmarks._machine import describe


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    args = parser.parse_args()
    print(describe())
    sensors.run(quick=args.quick)
    segments.run(quick=args.quick)
    exporter.run(quick=args.quick)
    ship.run(quick=args.quick)
    process.run(quick=args.quick)
    http_idle.run(quick=args.quick)
    web.run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
