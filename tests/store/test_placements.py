"""Owner -> cell placements, on SQLite and PostgreSQL: each node keeps its own map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentcell.errors import Conflict
from agentcell.store import Placements, Store


async def test_assign_look_up_and_remove(store: Store) -> None:
    here = Placements(store.engine, node="node-a")
    assert await here.cell_of("alice") is None
    assert await here.owners() == {}

    await here.assign("alice", "c1")
    await here.assign("bob", "c2")
    assert await here.cell_of("alice") == "c1"
    assert await here.owners() == {"alice": "c1", "bob": "c2"}

    await here.assign("alice", "c3")  # replaced
    assert await here.owners() == {"alice": "c3", "bob": "c2"}
    with pytest.raises(Conflict):
        await here.assign("carol", "c2")  # bob's
    assert await here.cell_of("carol") is None

    await here.remove("alice")
    await here.remove("alice")  # gone already: no error
    assert await here.owners() == {"bob": "c2"}


async def test_nodes_keep_their_own_maps(store: Store, db_url: str) -> None:
    a = Placements(store.engine, node="node-a")
    async with await Store.open(db_url) as elsewhere:  # another process's connection
        b = Placements(elsewhere.engine, node="node-b")
        await a.assign("alice", "c1")
        await b.assign("alice", "c9")
        await b.assign("bob", "c1")  # a cell id is unique per node only
        assert await a.owners() == {"alice": "c1"}
        assert await b.owners() == {"alice": "c9", "bob": "c1"}
        assert await Placements(elsewhere.engine, node="node-a").cell_of("alice") == "c1"
        await b.remove("alice")
        assert await a.cell_of("alice") == "c1"


async def test_a_nodes_old_file_is_taken_over(store: Store, tmp_path: Path) -> None:
    old = tmp_path / "cells.json"
    old.write_text(json.dumps({"alice": "c1", "bob": "c2"}))
    here = Placements(store.engine, node="node-a")
    assert await here.import_file(old) == 2
    assert await here.owners() == {"alice": "c1", "bob": "c2"}
    assert not old.exists()
    assert (tmp_path / "cells.json.imported").exists()
    assert await here.import_file(old) == 0  # once only
