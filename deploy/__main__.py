"""python -m deploy TARGET ...: deploy the gated image and model; prints the outcome as JSON.

    python -m deploy sagemaker --image-uri URI --model-tar model.tar.gz --bucket B --endpoint NAME --role ARN
    python -m deploy sagemaker-champion --endpoint NAME --out DIR   (the model serving now, for the gate)
    python -m deploy sagemaker-train --image URI --data DIR [--local-root DIR]   (the Train stage as a job)
    python -m deploy vms --image URI --inventory vms.json --model-tar model.tar.gz \
        --nginx-conf /etc/nginx/conf.d/mlship.conf
    python -m deploy vms-champion --urls http://10.0.0.1:8081 --out build/champion

Exit 0: the new release serves. Exit 1: it does not; the message says why and what serves instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from deploy.errors import DeployError
from deploy.targets import COMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="target", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        out = COMMANDS[args.target].run(args)
    except DeployError as exc:
        print(f"deploy: FAILED {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
