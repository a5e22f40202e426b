"""User states held as compact bytes in a key-value store, a bounded number decoded.

The worker's partitions keep their states in a Faust table (`streams.app`), and
`replay --state-cache` in a dict of bytes: either way the engine sees a mapping of
decoded states (`TableStates`), of which at most a set number stay decoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from itertools import islice
from typing import Any

from streams.state import UserState, dump, load

# Decoded user states kept in memory (about 4 KB each): this divided by the partition
# count per partition, so a worker that holds every partition keeps at most this
# many after each batch; the others are read from the table when needed.
DEFAULT_STATE_CACHE = 200_000


class TableStates(MutableMapping[str, UserState]):
    """A partition's view of the state table: decoded states cached, writes held.

    The engine's writes only mark a user dirty. The worker's shell takes the dirty
    states (`take_dirty`) and writes them to the table once the decisions they led
    to are delivered (then `stored`), from stream context, where Faust routes a
    write to the current event's changelog partition; `replay --state-cache`
    writes them to a dict every few thousand events (`replay._spill`).

    After each `take_dirty` at most `capacity` decoded states stay cached (within a
    batch, those it reads come on top): the least recently written go, and are
    decoded again from the table when next needed. With RocksDB the table is on
    disk, so what the worker holds per user is only its entry in the deadline index
    when it has a pending deadline. The bytes of a state taken but not yet stored
    are kept here meanwhile, so an evicted state is never read back older than it
    was. `users` counts on the engine's use: `get` before every write.
    """

    def __init__(self, table: Any, capacity: int = DEFAULT_STATE_CACHE) -> None:
        self.table = table
        self.capacity = capacity
        self.cache: dict[str, UserState] = {}  # least recently written first
        self.dirty: dict[str, UserState] = {}
        self.unstored: dict[bytes, bytes] = {}  # key -> bytes taken, not yet in the table
        self.users = 0  # this partition's users: restored, plus new ones since

    def __getitem__(self, uid: str) -> UserState:
        state = self.get(uid)
        if state is None:
            raise KeyError(uid)
        return state

    def get(  # type: ignore[override]  # one signature for the engine's one use
            self, uid: str, default: UserState | None = None) -> UserState | None:
        """The engine's lookup, once per event: for a user the table does not hold yet
        (a new user), one membership test of the store instead of the two KeyErrors
        that `Mapping.get` through Faust's table would raise and catch."""
        state = self.cache.get(uid)
        if state is None:
            key = uid.encode()
            raw = self.unstored.get(key)
            if raw is None:
                store = self.table.data
                if key not in store:
                    return default
                raw = store[key]
            state = self.cache[uid] = load(raw)
        return state

    def __setitem__(self, uid: str, state: UserState) -> None:
        cache = self.cache
        if cache.pop(uid, None) is None:
            self.users += 1  # `get` caches every user it finds: one not cached is new
        cache[uid] = state  # now the most recently written
        self.dirty[uid] = state

    def __delitem__(self, uid: str) -> None:
        raise TypeError("user state is never deleted by the engine")

    def __iter__(self) -> Iterator[str]:
        # The users are in the store, which may hold other partitions' too (the
        # worker's table): iterating the cache would pass off a part as the whole.
        raise TypeError("the states live in the store: iterate it, not this view")

    def __len__(self) -> int:
        return self.users  # this partition's users (`users`), not the decoded ones

    def restored(self, uid: str, state: UserState) -> None:
        """A state read from the table at assignment (cached while there is room)."""
        self.users += 1
        if len(self.cache) < self.capacity:
            self.cache[uid] = state

    def take_dirty(self) -> list[tuple[bytes, bytes]]:
        """The changed states' writes, once each; then evict down to the capacity
        (states read only, for a duplicate say, count too)."""
        writes = []
        if self.dirty:
            unstored = self.unstored
            for uid, state in self.dirty.items():
                key, raw = uid.encode(), dump(state)
                unstored[key] = raw
                writes.append((key, raw))
            self.dirty.clear()
        cache = self.cache
        excess = len(cache) - self.capacity
        if excess > 0:  # none is dirty now: the least recently written go
            for uid in list(islice(cache, excess)):
                del cache[uid]
        return writes

    def stored(self, writes: Iterable[tuple[bytes, bytes]]) -> None:
        """The table now holds these writes (from `take_dirty`)."""
        unstored = self.unstored
        for key, raw in writes:
            if unstored.get(key) is raw:  # not taken again since
                del unstored[key]
