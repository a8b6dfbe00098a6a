"""The flow file: parsing and one-line errors naming the step, where the flow file is
found, the scaling math from calibration to this screen, and the address check."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moonshot.app import flow as flowmod
from moonshot.app.flow import Calibration, Rect

STANDIN = Path(__file__).parent / "flows" / "standin.toml"


def standin_data() -> dict:
    return tomllib.loads(STANDIN.read_text(encoding="utf-8"))


def step_named(data: dict, name: str) -> dict:
    return next(s for s in data["step"] if s["name"] == name)


def test_packaged_and_standin_flows_parse_with_one_irreversible_click():
    for path in (flowmod.PACKAGED, STANDIN):
        fl = flowmod.load(path)
        cut = fl.steps[fl.irreversible_index]
        assert cut.name == "tap-create" and cut.action == "click"
        assert fl.after[0] is cut and cut not in fl.before
        assert [s.action for s in fl.before].count("check_photo") == 1
        assert fl.after[1].action == "outcome"


def _break(mutate):
    data = standin_data()
    mutate(data)
    return data


def _drop_after_click(d):
    cut = next(i for i, s in enumerate(d["step"]) if s.get("irreversible"))
    d["step"] = d["step"][: cut + 1]


CASES = [
    (
        "nothing after the click",
        _drop_after_click,
        "no outcome or read_address step after the irreversible step",
    ),
    (
        "no irreversible",
        lambda d: step_named(d, "tap-create").pop("irreversible"),
        "exactly one step must be irreversible",
    ),
    (
        "two irreversible",
        lambda d: step_named(d, "tap-name").update(irreversible=True),
        "found 'tap-name', 'tap-create'",
    ),
    (
        "irreversible wait",
        lambda d: step_named(d, "picker").update(irreversible=True),
        "step 8 'picker': action wait cannot be irreversible",
    ),
    (
        "type without field",
        lambda d: step_named(d, "type-name").pop("field"),
        "step 4 'type-name': action type needs field",
    ),
    (
        "type literal text",
        lambda d: step_named(d, "type-name").update(text="hello"),
        "step 4 'type-name': unknown key 'text'",
    ),
    (
        "click both ways",
        lambda d: step_named(d, "tap-create").update(at=[1, 2]),
        "step 14 'tap-create': action click needs exactly one of",
    ),
    (
        "address before",
        lambda d: d["step"].insert(2, {"name": "early", "action": "read_address", "at": [1, 1]}),
        "step 3 'early': read_address must come after the irreversible step 'tap-create'",
    ),
    (
        "photo check after",
        lambda d: d["step"].append(
            {"name": "late", "action": "check_photo", "region": [0, 0, 9, 9]}
        ),
        "'late': check_photo must come before",
    ),
    (
        "no ticker read-back",
        lambda d: d["step"].remove(step_named(d, "read-ticker")),
        "no read_text step with field = \"ticker\" between step 6 'type-ticker' and"
        " the irreversible step 'tap-create'",
    ),
    (
        "no name read-back",
        lambda d: d["step"].remove(step_named(d, "read-name")),
        'no read_text step with field = "name" between step 6',
    ),
    (
        "no picture read-back",
        lambda d: d["step"].remove(step_named(d, "read-picture")),
        "no read_photo step between step 9 'first-photo-is-coin' and the irreversible",
    ),
    (
        "read-back before the last typing",
        lambda d: d["step"].insert(3, d["step"].pop(d["step"].index(step_named(d, "read-name")))),
        "no read_text step with field = \"name\" between step 7 'type-ticker'",
    ),
    (
        "picture read before the picker",
        lambda d: d["step"].insert(
            6, d["step"].pop(d["step"].index(step_named(d, "read-picture")))
        ),
        "no read_photo step between step 10 'first-photo-is-coin'",
    ),
    (
        "read_text without region",
        lambda d: step_named(d, "read-name").pop("region"),
        "'read-name': action read_text needs region",
    ),
    (
        "read_text of the wrong field",
        lambda d: step_named(d, "read-name").update(field="address"),
        "'read-name': action read_text needs field",
    ),
    (
        "ticker on two lines",
        lambda d: step_named(d, "read-ticker").update(lines=2),
        "reads a ticker on one line",
    ),
    (
        "too many lines",
        lambda d: step_named(d, "read-name").update(lines=9),
        "lines = 9: expected a whole number from 1 to 4",
    ),
    (
        "lines elsewhere",
        lambda d: step_named(d, "form").update(lines=2),
        "'form': action verify cannot have lines",
    ),
    (
        "read_text after the click",
        lambda d: d["step"].append(
            {"name": "late", "action": "read_text", "field": "name", "region": [0, 0, 9, 9]}
        ),
        "'late': read_text must come before",
    ),
    (
        "verify typo",
        lambda d: step_named(d, "type-name").update(verify="eyes"),
        "verify = 'eyes': expected clipboard",
    ),
    (
        "flow verify typo",
        lambda d: d["flow"].update(verify="eyes"),
        "flow.verify = 'eyes'",
    ),
    (
        "ocr verify needs a region",
        lambda d: step_named(d, "type-name").update(verify="ocr"),
        "step 4 'type-name': verify = \"ocr\" reads the field back from the screen",
    ),
    (
        "ocr verify by default needs a region",
        lambda d: d["flow"].update(verify="ocr"),
        "step 4 'type-name': verify = \"ocr\"",
    ),
    (
        "verify on a click",
        lambda d: step_named(d, "tap-name").update(verify="ocr"),
        "action click cannot have verify",
    ),
    (
        "optional type",
        lambda d: step_named(d, "type-name").update(optional=True),
        "action type cannot be optional",
    ),
    (
        "optional click without image",
        lambda d: step_named(d, "tap-name").update(optional=True),
        "action click cannot be optional",
    ),
    (
        "optional irreversible",
        lambda d: step_named(d, "tap-create").update(optional=True),
        "action click cannot be optional",
    ),
    (
        "optional after the click",
        lambda d: step_named(d, "done").update(optional=True),
        "'done': optional steps must come before the irreversible step",
    ),
    (
        "clear on a wait",
        lambda d: step_named(d, "picker").update(clear=True),
        "action wait cannot clear a field",
    ),
    (
        "typing in the reset",
        lambda d: d["reset"].append({"name": "retype", "action": "type", "field": "name"}),
        "reset 5 'retype': action type cannot be in [[reset]]",
    ),
    (
        "spending in the reset",
        lambda d: d["reset"][0].update(irreversible=True),
        "reset 1 'close-picker': action click cannot be irreversible in [[reset]]",
    ),
    (
        "reset name reused",
        lambda d: d["reset"][0].update(name="tap-create"),
        "name 'tap-create' is used twice (step 14 'tap-create', reset 1 'tap-create')",
    ),
    (
        "interrupt without image",
        lambda d: d.update(interrupt=[{"name": "popup", "at": [1, 1]}]),
        "interrupt 1 'popup': needs image",
    ),
    (
        "interrupt clicks two things",
        lambda d: d.update(
            interrupt=[{"name": "popup", "image": "p.png", "at": [1, 1], "target": "x.png"}]
        ),
        "interrupt 1 'popup': give at most one of target",
    ),
    (
        "interrupt forever",
        lambda d: d.update(interrupt=[{"name": "popup", "image": "p.png", "times": 0}]),
        "times = 0: expected a whole number from 1 to 20",
    ),
    (
        "interrupt with an action",
        lambda d: d.update(interrupt=[{"name": "popup", "image": "p.png", "action": "click"}]),
        "interrupt 1 'popup': unknown key 'action'",
    ),
    (
        "interrupt as a table",
        lambda d: d.update(interrupt={"name": "popup"}),
        "interrupt must be written [[interrupt]]",
    ),
    (
        "bad name",
        lambda d: step_named(d, "form").update(name="Form Screen"),
        "step 2: name = 'Form Screen'",
    ),
    (
        "duplicate name",
        lambda d: step_named(d, "tap-ticker").update(name="tap-name"),
        "name 'tap-name' is used twice (step 3 'tap-name', step 5 'tap-name')",
    ),
    (
        "bad confidence",
        lambda d: step_named(d, "form").update(confidence=1.5),
        "step 2 'form': confidence = 1.5",
    ),
    (
        "unknown action",
        lambda d: step_named(d, "form").update(action="swipe"),
        "step 2 'form': action = 'swipe'",
    ),
    (
        "image not png",
        lambda d: step_named(d, "form").update(image="form.jpg"),
        "step 2 'form': image must be a .png",
    ),
    ("no calibration", lambda d: d.pop("calibration"), "calibration.window must be"),
    (
        "photo_confidence that lets look-alikes through",
        lambda d: d["flow"].update(photo_confidence=0.5),
        "flow.photo_confidence = 0.5: expected a number from 0.8 to 1.0",
    ),
    (
        "a photo step less strict than compare_photo",
        lambda d: next(s for s in d["step"] if s["action"] == "check_photo").update(confidence=0.7),
        "confidence = 0.7: expected a number from 0.8 to 1.0",
    ),
    ("non_ascii typo", lambda d: d["flow"].update(non_ascii="type"), "flow.non_ascii = 'type'"),
    (
        "failure elsewhere",
        lambda d: step_named(d, "form").update(failure=["x.png"]),
        "step 2 'form': action verify cannot have failure images",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_flows_fail_with_one_line_naming_the_problem(case, mutate, expected):
    with pytest.raises(flowmod.FlowError) as info:
        flowmod.parse(_break(mutate), STANDIN)
    message = str(info.value)
    assert expected in message, case
    assert "\n" not in message and str(STANDIN) in message


def test_unreadable_files_name_the_fix(tmp_path):
    with pytest.raises(flowmod.FlowError, match="not found; run `moonshot flow calibrate`"):
        flowmod.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[flow\n", encoding="utf-8")
    with pytest.raises(flowmod.FlowError, match="not valid TOML"):
        flowmod.load(bad)


def test_flow_file_precedence(tmp_path):
    assert flowmod.flow_path(tmp_path) == flowmod.PACKAGED
    own = tmp_path / "flow.toml"
    own.write_text("", encoding="utf-8")
    assert flowmod.flow_path(tmp_path) == own
    assert flowmod.flow_path(tmp_path, "flows/x.toml") == tmp_path / "flows" / "x.toml"
    assert flowmod.flow_path(tmp_path, "/abs/y.toml") == Path("/abs/y.toml")


WITH_EXTRAS = {
    "interrupt": [
        {"name": "whats-new", "image": "new.png", "target": "got-it.png", "times": 3},
        {"name": "rate-us", "image": "rate.png", "at": [10, 20], "confidence": 0.8},
    ],
}


def test_interrupts_and_reset_parse_with_their_defaults():
    data = {**standin_data(), **WITH_EXTRAS}
    fl = flowmod.parse(data, STANDIN)
    new, rate = fl.interrupts
    assert (new.label, new.action, new.times, new.target.name, new.at) == (
        "interrupt 1 'whats-new'",
        "interrupt",
        3,
        "got-it.png",
        None,
    )
    assert (rate.times, rate.target, rate.at, rate.confidence) == (1, None, (10.0, 20.0), 0.8)
    assert [s.label for s in fl.reset][0] == "reset 1 'close-picker'"
    assert fl.reset[0].optional and fl.reset[1].clear
    assert fl.verify_method(step_named_in(fl, "type-name")) == "clipboard"
    assert {p.name for _, p in fl.missing_images()} >= {"new.png", "got-it.png", "rate.png"}
    assert not fl.checked(fl.reset[-1]) and not fl.checked(new)
    assert fl.before_spend(new) and fl.before_spend(fl.reset[0])
    assert not fl.before_spend(step_named_in(fl, "outcome"))


def step_named_in(fl: flowmod.Flow, name: str) -> flowmod.Step:
    found = fl.entry(name)
    assert found is not None
    return found


def test_digest_covers_the_reference_images(tmp_path):
    data = copy.deepcopy(standin_data())
    raw = STANDIN.read_bytes()
    before = flowmod.parse(data, tmp_path / "flow.toml", raw).digest
    (tmp_path / "create.png").write_bytes(b"changed")
    assert flowmod.parse(data, tmp_path / "flow.toml", raw).digest != before


# -- scaling ----------------------------------------------------------------------------
def test_point_follows_the_window_when_moved_and_resized():
    cal = Calibration((400.0, 800.0), 2.0)
    assert flowmod.to_screen((100, 200), cal, Rect(0, 0, 400, 800)) == (100, 200)
    assert flowmod.to_screen((100, 200), cal, Rect(50, 30, 400, 800)) == (150, 230)
    assert flowmod.to_screen((100, 200), cal, Rect(50, 30, 600, 1200)) == (200, 330)
    r = flowmod.region_on_screen((10, 20, 100, 50), cal, Rect(5, 5, 200, 400))
    assert r == Rect(10, 15, 50, 25)


def test_image_scale_combines_retina_and_window_size():
    cal_retina = Calibration((400.0, 800.0), 2.0)
    assert flowmod.image_scale(cal_retina, Rect(0, 0, 400, 800), 2.0) == 1.0
    assert flowmod.image_scale(cal_retina, Rect(0, 0, 400, 800), 1.0) == 0.5  # external monitor
    assert flowmod.image_scale(Calibration((400.0, 800.0), 1.0), Rect(0, 0, 600, 1200), 2.0) == 3.0
    assert flowmod.pixels_to_points(Rect(200, 100, 40, 20), 2.0) == Rect(100, 50, 20, 10)


@settings(deadline=None)  # a loaded CI machine must not make these flaky
@given(
    st.floats(1, 3000),
    st.floats(1, 3000),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(-500, 500),
    st.floats(-500, 500),
    st.floats(0.25, 4),
)
def test_relative_position_is_preserved(w, h, fx, fy, dx, dy, grow):
    cal = Calibration((w, h), 1.0)
    win = Rect(dx, dy, w * grow, h * grow)
    x, y = flowmod.to_screen((fx * w, fy * h), cal, win)
    assert x == pytest.approx(dx + fx * w * grow, abs=1e-6)
    assert y == pytest.approx(dy + fy * h * grow, abs=1e-6)


# -- addresses ----------------------------------------------------------------------------
B58 = flowmod.BASE58


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


@settings(deadline=None)  # a loaded CI machine must not make these flaky
@given(st.binary(min_size=32, max_size=32))
def test_every_32_byte_key_is_a_valid_address(key):
    address = b58encode(key)
    assert flowmod.valid_address(address) == address
    assert flowmod.valid_address(f"  {address}\n") == address


@settings(deadline=None)  # a loaded CI machine must not make these flaky
@given(st.binary(min_size=1, max_size=40).filter(lambda b: len(b) != 32))
def test_keys_of_other_lengths_are_refused(key):
    assert flowmod.valid_address(b58encode(key)) is None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("So11111111111111111111111111111111111111112", True),  # wrapped SOL mint
        ("11111111111111111111111111111111", True),  # the system program
        ("So1111111111111111111111111111111111111111O", False),  # O is not base58
        ("0o11111111111111111111111111111111111111112", False),
        ("So111111111111111111111111111111", False),  # too short for 32 bytes
        ("Coin number 1!", False),
        ("", False),
        (None, False),
    ],
)
def test_known_addresses(text, ok):
    assert (flowmod.valid_address(text) is not None) is ok


def test_every_action_and_key_of_the_format_is_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The flow file") : readme.index("### A multi-screen flow")]
    words = set(flowmod.ACTIONS) | flowmod.STEP_KEYS | flowmod.INTERRUPT_KEYS | flowmod.FLOW_KEYS

    def said(w: str) -> bool:
        return any(form in section for form in (f"`{w}`", f"`{w} = ", f"\n{w} = "))

    missing = sorted(w for w in words if not said(w))
    assert not missing, f"README 'The flow file' does not explain: {missing}"
    assert "[[interrupt]]" in section and "[[reset]]" in section


def test_dollar_is_a_ticker_read_back_setting_only():
    data = standin_data()
    ticker = next(
        s for s in data["step"] if s.get("field") == "ticker" and s["action"] == "read_text"
    )
    ticker["dollar"] = True
    fl = flowmod.parse(data, STANDIN)
    assert next(s for s in fl.steps if s.name == ticker["name"]).dollar is True
    name = next(s for s in data["step"] if s.get("field") == "name" and s["action"] == "read_text")
    name["dollar"] = True
    with pytest.raises(flowmod.FlowError, match="cannot have dollar"):
        flowmod.parse(data, STANDIN)
