"""columns.py: one field factorized once, alike whatever pandas dtype holds it."""

from __future__ import annotations

import pandas as pd
import pytest

from capi_pipeline.columns import column

CASES = [
    ["b@x.org", "a@x.org", None, "b@x.org", "c@x.org"],
    [" padded ", "padded", "\u3000ideographic space\u3000", None],
    ["", "   ", "kept", None, "kept"],  # blank texts are missing
    [None, None],
    [],
]


@pytest.mark.parametrize("cells", CASES)
def test_arrow_text_columns_factorize_like_object_columns(cells: list) -> None:
    arrow = column(pd.Series(cells, dtype="str"))
    objects = column(pd.Series(cells, dtype=object))
    assert arrow.pos is None and objects.pos is None
    assert arrow.codes.tolist() == objects.codes.tolist()
    assert list(arrow.texts.py) == list(objects.texts.py)
    assert arrow.texts.arrow.to_pylist() == list(objects.texts.py)
    assert arrow.texts.ascii.tolist() == objects.texts.ascii.tolist()


def test_first_appearance_order_and_missing_code() -> None:
    col = column(pd.Series(["z", None, "a", "z"], dtype="str"))
    assert list(col.texts.py) == ["z", "a"] and col.codes.tolist() == [0, -1, 1, 0]
