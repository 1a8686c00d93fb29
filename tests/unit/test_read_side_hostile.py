"""The read side shows a stranger's spec fields only when a response can carry them: a lone
surrogate (`\\ud800` in the JSON) once turned `/jobs` into a 500 for every caller."""

from __future__ import annotations

from cod.queries import _spec_fields, _text


def test_a_lone_surrogate_in_a_spec_field_is_not_shown() -> None:
    assert _text("\ud800") is None
    assert _spec_fields('{"image": "\\ud800"}') == {}


def test_ordinary_fields_are_shown() -> None:
    assert _text("cod/busybox:latest") == "cod/busybox:latest"
    assert _text("x" * 513) is None and _text(5) is None
    assert _spec_fields('{"image": "é"}') == {"image": "é"}
    assert _spec_fields("[" * 5000) == {} and _spec_fields('{"t": ' + "9" * 5000 + "}") == {}
