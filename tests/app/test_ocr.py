"""The real RapidOCR engine on text rendered as an app draws it: tickers, names with
spaces, a wrapped name, blank and framed boxes, low contrast, dark mode, Retina scale;
and the read-back rules applied to what it reads (design.md invariant 6)."""

from __future__ import annotations

import sys

import pytest
from PIL import Image, ImageDraw

from moonshot.app import ocr, readback
from moonshot.errors import PortUnavailable
from tests.app.pictures import text_block, text_box

MIN = 0.8  # the minimum confidence the flows use


@pytest.fixture(scope="session")
def reader() -> ocr.TextReader:
    return ocr.default_reader()


def test_one_reader_per_process_on_one_thread(reader):
    assert ocr.default_reader() is reader
    sessions = [
        reader._engine.text_det.infer.session,
        reader._engine.text_rec.session.session,
    ]
    for s in sessions:
        assert s.get_session_options().intra_op_num_threads == 1


def test_a_missing_engine_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import raises
    with pytest.raises(PortUnavailable, match="pip install rapidocr_onnxruntime"):
        ocr.RapidReader()


@pytest.mark.parametrize(
    "text, kwargs",
    [
        ("$TEST1", {}),
        ("$SOL10", {}),
        ("$B8S5", {}),
        ("Test One", {}),
        ("Prefilled Coin", {}),
        ("$TEST1", {"width": 340}),  # a wide box, text at the left
        ("Prefilled Coin", {"fg": (235, 235, 235), "bg": (28, 28, 30)}),  # dark mode
        ("Moon Coin", {"scale": 2}),  # a Retina screenshot
        ("Grey text", {"fg": (160, 160, 160)}),
        ("Low Contrast", {"fg": (150, 150, 150), "bg": (120, 120, 120)}),
        ("Serif Name", {"face": "DejaVuSerif.ttf", "size": 13}),
        ("Prefilled Doge Hat", {"face": "DejaVuSans.ttf", "size": 11}),  # small: scaled up
    ],
)
def test_read_line_reads_text_and_keeps_spaces(reader, text, kwargs):
    got = reader.read_line(text_box(text, **kwargs))
    assert got.text == text
    assert got.confidence >= 0.9


def test_confusables_read_within_their_class(reader):
    # design.md measured these: O/0 and I/1 may swap, the length never changes.
    for ticker in ("$M00N", "$I1L1", "$O0O0"):
        got = reader.read_line(text_box(ticker))
        assert len(got.text) == len(ticker)
        assert readback.compare_ticker(ticker[1:], got, min_confidence=0.75).ok, got


@pytest.mark.parametrize(
    "box",
    [
        Image.new("RGB", (200, 30), (255, 255, 255)),
        Image.new("RGB", (200, 30), (28, 28, 30)),
        text_box("", width=200),
        text_box("Faint", fg=(130, 130, 130), bg=(120, 120, 120)),  # 10 levels: nothing
        Image.new("RGB", (1, 1), (0, 0, 0)),
    ],
    ids=["white", "dark", "empty-label", "faint", "one-pixel"],
)
def test_a_blank_box_reads_nothing_and_never_raises(reader, box):
    assert reader.read_line(box) == ocr.Reading("", 0.0)
    assert reader.read_block(box) == []


def test_a_field_frame_is_not_text(reader):
    box = Image.new("RGB", (220, 34), (255, 255, 255))
    ImageDraw.Draw(box).rectangle((0, 0, 219, 33), outline=(170, 170, 170), width=1)
    assert reader.read_line(box).text == ""
    field = box.copy()
    field.paste(text_box("MOON", width=120), (2, 3))
    assert reader.read_line(field).text == "MOON"


def test_a_thick_frame_around_the_text_is_left_out(reader):
    box = Image.new("RGB", (300, 40), (255, 255, 255))
    ImageDraw.Draw(box).rectangle((0, 0, 299, 39), outline=(0, 0, 0), width=2)
    box.paste(text_box("$TEST1", size=12), (30, 8))
    assert reader.read_line(box).text == "$TEST1"


def test_read_block_gives_the_lines_top_to_bottom_with_spaces(reader):
    got = reader.read_block(text_block(["Prefilled Coin", "of the Moon"]))
    assert [r.text for r in got] == ["Prefilled Coin", "of the Moon"]
    assert min(r.confidence for r in got) >= 0.9
    one = reader.read_block(text_block(["Test One"]))
    assert [r.text for r in one] == ["Test One"]
    small = reader.read_block(text_block(["Prefilled Coin of", "the Moon Forever"], size=11))
    assert [r.text for r in small] == ["Prefilled Coin of", "the Moon Forever"]


def test_a_review_screen_read_back(reader):
    """The boxes of a review screen as the flow reads them: the ticker with '$', a
    wrapped name, a truncated one; left-over text refused."""
    ticker = reader.read_line(text_box("$MOON"))
    assert readback.compare_ticker("MOON", ticker, min_confidence=MIN, dollar=True).ok
    name = reader.read_block(text_block(["Prefilled Coin of", "the Moon"]))
    assert readback.compare_name("Prefilled Coin of the Moon", name, min_confidence=MIN).ok
    cut = reader.read_block(text_block(["Prefilled Coin of the…"]))
    assert readback.compare_name("Prefilled Coin of the Moon", cut, min_confidence=MIN).ok
    left = reader.read_line(text_box("$MOONXX"))
    assert not readback.compare_ticker("MOON", left, min_confidence=MIN, dollar=True).ok
    old = reader.read_block(text_block(["Prefilled CoinOld"]))
    verdict = readback.compare_name("Prefilled Coin", old, min_confidence=MIN)
    assert not verdict.ok and "3 characters too many" in verdict.reason
