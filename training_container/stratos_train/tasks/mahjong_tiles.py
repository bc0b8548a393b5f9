"""Mahjong tile notation shared by the task, the verifier and the traces (rules: :mod:`.mahjong`).

Tiles are 34 kinds in the ``mahjong`` package's index order; a hand is 34 counts. One-line notation puts a
suit letter after its numbers (``123m456p789s1122z``); a group is written the same way (``345m``, ``11z``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mahjong.tile import TilesConverter

#: Tile kinds in the package's 34-index order: 0-8 = 1m-9m, 9-17 = 1p-9p, 18-26 = 1s-9s, 27-33 = 1z-7z.
TILES: tuple[str, ...] = tuple(f"{n}{s}" for s in "mps" for n in range(1, 10)) + tuple(f"{n}z" for n in range(1, 8))
TILE_INDEX: dict[str, int] = {name: i for i, name in enumerate(TILES)}
N_KINDS = 34
COPIES = 4
HAND_SIZE = 13
HONOURS = 27
SUIT_STARTS = (0, 9, 18)

# Group shapes, in the order groups sort when starting on the same tile ("111m 11m 123m").
SET, PAIR, RUN = 0, 1, 2
Group = tuple[int, int]  # (34-index of the group's lowest tile, shape)
Arrangement = tuple[Group, ...]

_HAND_RE = re.compile(r"^(?:[1-9]+[mps]|[1-7]+z)+$")
_TILE_RUN_RE = re.compile(r"(\d+)\s?([mpsz])(?![a-z])", re.IGNORECASE)
GROUP_RE = re.compile(r"^(\d{1,3})([mpsz])$", re.IGNORECASE)


def parse_hand(notation: str, size: int | None = HAND_SIZE) -> list[int]:
    """34 tile counts of a hand in one-line notation (``"123m456p789s1122z"``).

    Args:
        notation: numbers followed by their suit letter ``m``/``p``/``s`` (1-9) or ``z`` (1-7); no spaces,
            no red fives.
        size: required number of tiles (None: any).

    Raises:
        ValueError: bad characters, a number outside its suit's range, more than four copies of a tile, or
            the wrong number of tiles.
    """
    text = notation.strip()
    if not _HAND_RE.match(text):
        raise ValueError(f"{notation!r} is not one-line tile notation like '123m456p789s1122z' (honours 1-7z)")
    # Counted here, not with TilesConverter: it turns a fifth copy into the next tile kind ("11111m" -> 1m x4 + 2m).
    counts = [0] * N_KINDS
    for digits, suit in re.findall(r"(\d+)([mpsz])", text):
        for digit in digits:
            counts[TILE_INDEX[f"{digit}{suit}"]] += 1
    over = [TILES[i] for i, c in enumerate(counts) if c > COPIES]
    if over:
        raise ValueError(f"{notation!r} holds more than {COPIES} copies of {', '.join(over)}")
    if size is not None and sum(counts) != size:
        raise ValueError(f"{notation!r} has {sum(counts)} tiles, expected {size}")
    return counts


def format_hand(counts: Sequence[int]) -> str:
    """One-line notation of 34 tile counts, as the ``mahjong`` package writes it (``123m456p789s1122z``)."""
    return str(TilesConverter.to_one_line_string(TilesConverter.to_136_array(list(counts))))


def format_group(group: Group) -> str:
    """``(27, SET)`` -> ``"111z"``; ``(2, RUN)`` -> ``"345m"``; ``(9, PAIR)`` -> ``"11p"``."""
    kind, shape = group
    number, suit = TILES[kind][0], TILES[kind][1]
    if shape == RUN:
        start = int(number)
        return f"{start}{start + 1}{start + 2}{suit}"
    return number * (2 if shape == PAIR else 3) + suit


def parse_tiles(text: str) -> tuple[str, ...]:
    """Tile names mentioned in free text, distinct, in tile order; unknown names (``8z``, ``0m``) kept last.

    Accepts one-line notation (``"123m"``), separate tiles in any order with any separators
    (``"6m, 3m 3m"``), a space before the suit letter (``"3 m"``) and capitals. A number followed by a word
    (``"5 minutes"``) is not a tile.
    """
    seen: dict[str, None] = {}
    for digits, suit in _TILE_RUN_RE.findall(text):
        for digit in digits:
            seen.setdefault(f"{digit}{suit.lower()}", None)
    return tuple(sorted(seen, key=lambda t: (TILE_INDEX.get(t, N_KINDS), t)))


def format_arrangement(arrangement: Arrangement) -> str:
    """``"123m 456p 789s 111z 22z"``."""
    return " ".join(format_group(g) for g in arrangement)


def group_kinds(group: Group) -> list[int]:
    kind, shape = group
    return [kind, kind + 1, kind + 2] if shape == RUN else [kind] * (2 if shape == PAIR else 3)
