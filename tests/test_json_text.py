"""JSON by orjson, as json would have it: response bodies (protocol.json_text), the text
json.dumps writes compactly; JSON columns written (config.write_json) and read back
(config.read_json), the values json.dumps and json.loads give."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from app.config import read_json, write_json
from app.protocol import json_text

# What a response can hold: the JSON the validator lets in and the database gives back. Text
# is without lone surrogates, which app/intake.py refuses; integers of any size.
TEXT = st.text(st.characters(exclude_categories=("Cs",)))
SCALARS = st.none() | st.booleans() | st.integers() | TEXT
FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def documents(scalars: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)
        ),
        max_leaves=20,
    )


@given(documents(SCALARS))
def test_json_text_is_what_json_dumps_writes_compactly(value):
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"
    assert json_text(value) == expected.encode()


@given(documents(SCALARS | FLOATS))
def test_json_text_reads_back_as_the_value_floats_included(value):
    # Floats are the one difference: orjson writes an exponent without json's padding (1e-7,
    # not 1e-07), the same number.
    assert json.loads(json_text(value)) == value


# What a JSON column can hold, as any writer may have put it: every character, lone surrogates
# included (as escapes), floats and NaN, integers of any size, json.dumps's default spacing.
STORED = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)  # around 64 bits, where orjson stops reading integers
    | st.text()
    | st.floats()
)


@given(documents(STORED), st.booleans())
def test_a_json_column_reads_as_json_loads_reads_it(value, as_bytes):
    text = json.dumps(value)
    stored = text.encode() if as_bytes else text  # psycopg hands over bytes, SQLite text
    # Compared as JSON text: NaN is not equal to itself.
    assert json.dumps(read_json(stored)) == json.dumps(json.loads(text))


# What the service writes into a JSON column: every character, lone surrogates included (the
# validator refuses them in requests, but json writes them as escapes), integers of any size,
# finite floats (protocol.json_body refuses a body that holds infinity or NaN).
WRITTEN = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70) | st.text() | FLOATS
)


@given(documents(WRITTEN), st.booleans())
def test_a_json_column_written_reads_back_as_json_dumps_would(value, as_bytes):
    text = write_json(value)
    stored = text.encode("utf-8", "surrogatepass") if as_bytes else text
    assert json.dumps(read_json(stored)) == json.dumps(json.loads(json.dumps(value)))
