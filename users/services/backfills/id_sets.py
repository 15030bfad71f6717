"""Sets of user ids as bitmaps, for the backfills that cover every user.

A backfill of a million users must not hold a Python set or dict of them: a set of a million ints costs about 60 MB,
and the resync needs one per segment. An IdSet spends one bit per id in blocks of BLOCK consecutive ids, and only
on the blocks that hold any: 125 KB per million ids when they are dense (a site's user ids are), a few hundred
bytes for a handful. Blocks are read in id order, so a caller can walk several sets side by side, a block at a time,
with whole-block operations on Python ints.
"""

from collections.abc import Iterable, Iterator

BLOCK = 4096  # ids per block: 512 bytes of bits
_BLOCK_BYTES = BLOCK // 8
_BLOCK_SHIFT = BLOCK.bit_length() - 1  # BLOCK is a power of two
_BLOCK_MASK = BLOCK - 1
# The positions of the set bits of each byte value, to turn a block's bytes into ids without a loop per bit.
_BITS = [tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256)]


class IdSet:
    def __init__(self, ids: Iterable[int] = ()):
        self._blocks: dict[int, bytearray] = {}
        self._count = 0
        for id_ in ids:
            self.add(id_)

    def add(self, id_: int) -> None:
        number, offset = divmod(id_, BLOCK)
        block = self._blocks.get(number)
        if block is None:
            block = self._blocks[number] = bytearray(_BLOCK_BYTES)
        mask = 1 << (offset & 7)
        if not block[offset >> 3] & mask:
            block[offset >> 3] |= mask
            self._count += 1

    def add_all(self, ids: Iterable[int]) -> None:
        """add() for many ids (a membership page's): the same, with less work per id."""
        blocks = self._blocks
        added = 0
        for id_ in ids:
            number = id_ >> _BLOCK_SHIFT
            block = blocks.get(number)
            if block is None:
                block = blocks[number] = bytearray(_BLOCK_BYTES)
            index, mask = (id_ & _BLOCK_MASK) >> 3, 1 << (id_ & 7)
            if not block[index] & mask:
                block[index] |= mask
                added += 1
        self._count += added

    def discard(self, id_: int) -> None:
        number, offset = divmod(id_, BLOCK)
        block = self._blocks.get(number)
        mask = 1 << (offset & 7)
        if block is not None and block[offset >> 3] & mask:
            block[offset >> 3] &= ~mask & 0xFF
            self._count -= 1

    def __contains__(self, id_: int) -> bool:
        number, offset = divmod(id_, BLOCK)
        block = self._blocks.get(number)
        return block is not None and bool(block[offset >> 3] & (1 << (offset & 7)))

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[int]:
        for number in sorted(self._blocks):
            yield from ids_of(number, self.block(number))

    def block_numbers(self) -> list[int]:
        """The numbers of the blocks that may hold ids, in order (block n holds ids n*BLOCK to (n+1)*BLOCK-1)."""
        return sorted(self._blocks)

    def block(self, number: int) -> int:
        """Block `number` as an int whose bit i says whether id number*BLOCK+i is in the set."""
        block = self._blocks.get(number)
        return int.from_bytes(block, "little") if block is not None else 0

    def set_block(self, number: int, bits: int) -> None:
        """Replace block `number` with `bits` (as block() returns them)."""
        old = self._blocks.pop(number, None)
        if old is not None:
            self._count -= int.from_bytes(old, "little").bit_count()
        if bits:
            self._blocks[number] = bytearray(bits.to_bytes(_BLOCK_BYTES, "little"))
            self._count += bits.bit_count()

    def intersection(self, other: "IdSet") -> "IdSet":
        result = IdSet()
        for number in self._blocks.keys() & other._blocks.keys():
            result.set_block(number, self.block(number) & other.block(number))
        return result

    def update(self, other: "IdSet") -> None:
        for number in other.block_numbers():
            self.set_block(number, self.block(number) | other.block(number))


def ids_of(number: int, bits: int) -> list[int]:
    """The ids of block `number` whose bits are set in `bits`, in order."""
    if not bits:
        return []
    base = number * BLOCK
    ids = []
    for index, value in enumerate(bits.to_bytes(_BLOCK_BYTES, "little")):
        if value:
            start = base + index * 8
            ids.extend(start + bit for bit in _BITS[value])
    return ids


def bits_of(number: int, ids: Iterable[int]) -> int:
    """The block `number` bits of `ids` (all of them in that block)."""
    base = number * BLOCK
    bits = 0
    for id_ in ids:
        bits |= 1 << (id_ - base)
    return bits
