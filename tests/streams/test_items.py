"""Catalog changes on topic ``items``: validation and collapsing a run of changes."""

from __future__ import annotations

import msgpack
import pytest

from streamrec.streams.items import (
    DELETE,
    UPSERT,
    CatalogChange,
    decode_change,
    encode_delete,
    encode_upsert,
    latest_changes,
)


def test_upsert_and_delete_round_trip():
    assert decode_change(b"a", encode_upsert("a", [1, 2.5]), dim=2) == CatalogChange(
        UPSERT, "a", (1.0, 2.5)
    )
    assert decode_change(b"a", encode_delete("a"), dim=2) == CatalogChange(DELETE, "a")


def test_a_tombstone_deletes_its_key():
    assert decode_change(b"gone", None, dim=4) == CatalogChange(DELETE, "gone")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1]), "not a map"),
        (msgpack.packb({"op": "upsert", "vector": [1.0, 2.0]}), "item_id"),
        (msgpack.packb({"op": "rename", "item_id": "a"}), "unknown op"),
        (msgpack.packb({"op": "upsert", "item_id": "a", "vector": [1.0]}), "list of 2"),
        (
            msgpack.packb({"op": "upsert", "item_id": "a", "vector": [1.0, float("nan")]}),
            "non-finite",
        ),
        (msgpack.packb({"op": "upsert", "item_id": "a", "vector": [1.0, "x"]}), "non-finite"),
    ],
)
def test_bad_changes_are_refused_with_the_reason(value, words):
    with pytest.raises(ValueError, match=words):
        decode_change(b"a", value, dim=2)


def test_only_the_last_change_of_each_item_counts():
    changes = [
        CatalogChange(UPSERT, "a", (1.0,)),
        CatalogChange(DELETE, "b"),
        CatalogChange(DELETE, "a"),
        CatalogChange(UPSERT, "b", (2.0,)),
        CatalogChange(UPSERT, "c", (3.0,)),
    ]
    upserts, deletes = latest_changes(changes)
    assert [(c.item_id, c.vector) for c in upserts] == [("b", (2.0,)), ("c", (3.0,))]
    assert deletes == ["a"]
