"""Portal locations cannot leave the allowed roots, through '..' or through symlinks."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import Forbidden
from inference.portal.sources import parse_location


@pytest.mark.parametrize("name", ["out-file", "out-dir/data.csv", "../outside/data.csv", "chain/data.csv"])
def test_a_location_escaping_the_root_is_refused(tmp_path: Path, name: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "data.csv").write_text("a\n1\n")
    (root / "out-file").symlink_to(outside / "data.csv")  # a file link pointing out
    (root / "out-dir").symlink_to(outside)                # a folder link pointing out
    (root / "hop").symlink_to(outside)
    (root / "chain").symlink_to(root / "hop")             # a link to a link pointing out
    for location in (str(root / name), f"file://{root / name}"):
        with pytest.raises(Forbidden, match="outside the allowed roots"):
            parse_location(location, ("file",), (root.resolve(),))


def test_links_that_stay_inside_are_followed_to_their_target(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "data.csv").write_text("a\n1\n")
    (root / "alias").symlink_to(root / "real")
    assert parse_location(str(root / "alias" / "data.csv"), ("file",), (root.resolve(),)) == (
        "file", str((root / "real" / "data.csv").resolve()))
