"""`./run bench`: every benchmark, reference and project in the same run.

    python -m bench [serve_gender] [--seconds 10 --reps 3]
"""

from __future__ import annotations

import importlib
import sys

SUITES = ["serve_gender", "gender_talkingdata", "gender_operating_points", "propensity_quality",
          "propensity_serving", "portal", "rollout", "spark_batch", "explanations"]


def main(argv: list[str]) -> int:
    chosen = [a for a in argv if not a.startswith("-") and a in SUITES] or SUITES
    rest = [a for a in argv if a not in chosen]
    failed = 0
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"== bench {name}: not available yet, skipped")
            continue
        print(f"== bench {name}", flush=True)
        failed |= int(module.main(rest) != 0)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
