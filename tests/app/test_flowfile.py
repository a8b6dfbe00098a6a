"""The user's flow file survives the tools that write it: comments, key order, blank
lines and formatting are kept; a changed value keeps its comment; a new key lands in
its own table (not after the comment that leads into the next one); every save lists
what it changed."""

from __future__ import annotations

import re

import pytest

from moonshot.app import flow as flowmod
from moonshot.app.flowfile import FlowFile

HAND = """\
# My Moonshot flow. Written by hand, 2024-05-01.
[flow]
app = "Moonshot"      # the Mac app, not iPhone Mirroring
non_ascii = "paste"

[calibration]
window = [300.0, 400.0]   # measured on the MacBook
pixel_ratio = 2.0

[[step]]
name = "front"
action = "activate"

# the name field: clicked, not found by image (two fields look alike)
[[step]]
name = "tap-name"
action = "click"
at = [150.0, 75.0]    # middle of the field

  # an odd, indented comment
[[step]]
name = "create"
action = "click"
image = "create.png"
irreversible = true   # THE one that spends
"""


def comments(text: str) -> list[str]:
    return [m.group(0).strip() for m in re.finditer(r"#[^\n]*", text)]


def test_edits_keep_every_comment_and_the_order(tmp_path):
    path = tmp_path / "flow.toml"
    path.write_text(HAND, encoding="utf-8")
    ff = FlowFile.open(path)
    ff.put(ff.find("tap-name"), "at", [151.5, 77.0])
    ff.put(ff.table("calibration"), "window", [330.0, 720.0])
    ff.put(ff.find("front"), "timeout", 3.0)  # a new key in a table followed by a comment
    ff.swap(ff.find("create"), "image", "at", [150.0, 360.0])  # keeps the line's place
    changes = ff.save()
    text = path.read_text(encoding="utf-8")
    assert comments(text) == comments(HAND)
    assert "at = [151.5, 77.0]    # middle of the field" in text
    assert "window = [330.0, 720.0]   # measured on the MacBook" in text
    # The new key sits in its own table, before the comment that leads into the next one.
    front = text.index('name = "front"')
    assert front < text.index("timeout = 3.0") < text.index("# the name field")
    assert changes == [
        "~ calibration: window [300.0, 400.0] -> [330.0, 720.0]",
        "+ step 'front': timeout = 3.0",
        "~ step 'tap-name': at [150.0, 75.0] -> [151.5, 77.0]",
        "+ step 'create': at = [150.0, 360.0]",
        "- step 'create': image (was \"create.png\")",
    ]
    assert 'name = "create"\naction = "click"\nat = [150.0, 360.0]\nirreversible' in text


def test_changes_name_added_removed_and_unchanged(tmp_path):
    path = tmp_path / "flow.toml"
    path.write_text(HAND, encoding="utf-8")
    ff = FlowFile.open(path)
    assert ff.changes() == []
    ff.drop(ff.find("tap-name"), "at")
    ff.put(ff.find("tap-name"), "image", "tap-name.png")
    assert ff.changes() == [
        "- step 'tap-name': at (was [150.0, 75.0])",
        "+ step 'tap-name': image = \"tap-name.png\"",
    ]
    ff.save()
    assert FlowFile.open(path).changes() == []
    assert not (tmp_path / "flow.toml.part").exists()


def test_a_broken_file_is_one_line(tmp_path):
    path = tmp_path / "flow.toml"
    path.write_text("[flow\n", encoding="utf-8")
    with pytest.raises(flowmod.FlowError, match="not valid TOML"):
        FlowFile.open(path)
    with pytest.raises(flowmod.FlowError, match="not found"):
        FlowFile.open(tmp_path / "nope.toml")
