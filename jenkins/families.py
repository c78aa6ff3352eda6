"""The model families the pipeline trains, gates and deploys: those training/<family>/family.py
declares (training/families.py finds them), never a list of CI's own.

    python -m jenkins.families          the names, one a line: the Jenkinsfile's stages loop over them
    python -m jenkins.families --show   what CI takes from each declaration, as JSON

The pipeline's per-family parameters are one string each, whose items name their family, so that a
new family needs no new parameter: TRAIN_DATA ``"gender=/data/gender propensity=/data/p"`` (a
family not named trains on its synthetic data), HYPERPARAMETERS ``"gender.num_round=50
propensity.epochs=3"`` (a family not named trains with its declared CI hyperparameters) and
GATE_FLOORS ``"gender.roc_auc=0.65"`` (a family's declared floors, each overridden by an item that
names it). `for_family` and `data_for` pick one family's items.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Collection, Sequence

from training.families import Family, all_families


def names() -> tuple[str, ...]:
    return tuple(all_families())


def get(name: str) -> Family:
    declared = all_families()
    if name not in declared:
        raise SystemExit(f"no model family {name!r}: training/ declares {', '.join(declared) or 'none'}")
    return declared[name]


def for_family(text: str, family: str, known: Collection[str] | None = None) -> list[str]:
    """The ``KEY=VALUE`` items of ``text`` for ``family``: ``FAMILY.KEY=VALUE`` items of this family
    (the prefix dropped) and unqualified ones; items of another family are left out."""
    known = names() if known is None else known
    picked = []
    for item in shlex.split(text):
        prefix, dot, _ = item.partition("=")[0].partition(".")
        if dot and prefix in known:
            if prefix == family:
                picked.append(item[len(prefix) + 1:])
        else:
            picked.append(item)
    return picked


def data_for(text: str, family: str, known: Collection[str] | None = None) -> str | None:
    """The data folder ``text`` gives ``family``: ``FAMILY=FOLDER`` items (None when this family is
    not named: it trains on synthetic data), or one plain folder; empty text: None."""
    known = names() if known is None else known
    items = shlex.split(text)
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or name not in known:
            raise SystemExit(f"train data {item!r} is not FAMILY=FOLDER for a family of {', '.join(known)}")
        if name == family:
            return folder
    return None


def describe(family: Family) -> dict[str, object]:
    """What CI reads from a declaration."""
    return {"name": family.name, "algorithms": list(family.algorithms),
            "default_algorithm": family.default_algorithm,
            "ci_hyperparameters": dict(family.ci_hyperparameters), "gate": dict(family.gate),
            "synthetic": family.synthetic}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jenkins.families", description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="each family's CI declaration as JSON")
    args = parser.parse_args(argv)
    declared = all_families()
    if not declared:
        print("families: training/ declares no family (no training/<family>/family.py)", file=sys.stderr)
        return 1
    if args.show:
        print(json.dumps([describe(f) for f in declared.values()], indent=1))
    else:
        print("\n".join(declared))
    return 0


if __name__ == "__main__":
    sys.exit(main())
