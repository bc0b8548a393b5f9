"""Mahjong winning tiles: given a 13-tile riichi hand one tile from complete, name every tile that completes it.

Rules scored by (the hand shapes of Japanese riichi mahjong, as the PyPI ``mahjong`` package's
``Agari.is_agari`` implements them, plus the two choices marked below):

* 136 tiles: four copies each of 1-9 in three suits, man ``m``, pin ``p``, sou ``s``, and of seven honours
  ``1z``-``7z`` (winds East, South, West, North; dragons White, Green, Red).
* A **complete hand** is 14 closed tiles arranged as four melds (a *set*: three identical tiles; a *run*:
  three consecutive numbers of one suit; honours never form runs) plus one pair, **or seven pairs**
  (chiitoitsu: seven *distinct* pairs; four identical tiles are not two pairs). Both count here.
* Choice 1: **thirteen orphans (kokushi musou) does not count** (``Agari`` accepts it): the generator never
  produces it and the brute-force check excludes it too. No yaku is required (this is about shape, not scoring).
* A **winning tile** (a *wait*) is a tile kind that, added to the 13 tiles, makes a complete hand. Choice 2:
  a kind whose four copies are all already in the hand is **not** a wait, as there is no fifth copy to draw
  (karaten; ``Agari`` does not know which copies exist).

Notation: the package's one-line notation, suit letter after its numbers, tiles in order:
``123m456p789s1122z``. An answer is the sorted list of tile names in tile order (m, p, s, z; then number):
``["3m", "6m", "1z"]``. SmolLM2's tokenizer splits digits, so each tile costs one token plus one per suit.

Reasoning trace (:func:`render_trace`), four styles. ``suits`` (the default; :mod:`.mahjong_suits`): one
line per suit, letter first, with its melds or ``open``, then every split of the OPEN suits into melds + a
leftover shape and the tiles that complete it (``456m + 44m 13m = 2m``); the melds-only suits are the same in
every split, so they are left out. In a 1,200-example pilot (same recipe) its student reached 8 % exact on the
generator's eval hands, where ``decompose`` had reached 2 % with 800 (README). ``waits``: one line per winning
tile, in tile order, showing one complete arrangement of the 14 tiles, groups in tile order (``1z: 123m 456p
789s 111z 22z``); a seven-pairs line has seven pairs. ``decompose`` (forward reasoning, see
:func:`decompose_lines`): every split of the whole 13 tiles into complete groups plus a leftover shape, and the
tiles that complete it (``123m 456p 789s + 11z 22z = 1z 2z``). ``candidates``: ``waits`` plus a line ``4m: no``
for every other candidate tile (one within two numbers of a held tile of its suit, or a held honour). The
training target is the trace followed by ``Answer: 1z 2z`` (``Answer: none`` for a hand with no wait).

Reverse synthesis (:func:`generate_examples`): draw a complete 14-tile hand (four melds + pair), remove one
tile, compute every wait with the verifier (:func:`winning_tiles`) and the trace with an independent
decomposer (:func:`arrangements`, which must agree for every wait, else :class:`RuntimeError`). Examples are
stratified by number of waits (1, 2, 3, 4+) and whether the hand holds an honour, eight equal strata;
no 13-tile hand appears twice. The split is by a structural key (:func:`structural_key`) that ignores which
suit is which, a suit's mirror image (n -> 10 - n) and which honour is which — all symmetries that preserve
waits — hashed with a fixed salt, so *any* train set and *any* eval set are disjoint, whatever their seeds and
sizes.

Complexity (:func:`hand_complexity`): the number of complete arrangements over all winning tiles (a hand
with waits 1z and 2z, one arrangement each, scores 2; each extra way to arrange the same 14 tiles adds 1).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar, Literal

from mahjong.agari import Agari

from stratos_contract.tasks import TASKS
from stratos_train.tasks.base import (
    Answer,
    Example,
    Message,
    Score,
    Split,
    TaskBase,
    TaskDataError,
    Verdict,
    largest_remainder,
)
from stratos_train.tasks.mahjong_suits import (
    SUIT_LINE_RE,
    check_suits_line,
    closed_suit_groups,
    open_suits,
    suit_lines,
    suit_waits,
)
from stratos_train.tasks.mahjong_tiles import (
    COPIES,
    GROUP_RE,
    HAND_SIZE,
    HONOURS,
    N_KINDS,
    PAIR,
    RUN,
    SET,
    SUIT_STARTS,
    TILE_INDEX,
    TILES,
    Arrangement,
    Group,
    format_arrangement,
    format_group,
    format_hand,
    group_kinds,
    parse_hand,
    parse_tiles,
)
from stratos_train.tasks.scoring import answer_segment, set_f1

NAME = "mahjong-winning-tiles"

#: Share of structural classes reserved for eval. Fixed (not an option): train and eval are disjoint only
#: if both sides split by the same share.
EVAL_SHARE = 0.25
_SPLIT_SALT = b"stratos-mj-split"  # 16 bytes: blake2b's "person" field

#: Name of the second held-out set: random draws that wait (not built by the generator).
RANDOM_TENPAI = "random-tenpai"

#: Number-of-waits buckets; the last is open-ended ("4+").
WAIT_BUCKETS: tuple[int, ...] = (1, 2, 3, 4)

PromptStyle = Literal["full", "compact"]
TraceStyle = Literal["waits", "candidates", "decompose", "suits"]
TRACE_STYLES: tuple[str, ...] = ("waits", "candidates", "decompose", "suits")

RULES_TEXT = (
    "Riichi mahjong. Tiles: 1-9m, 1-9p, 1-9s and honours 1-7z. A complete hand is 14 tiles: four melds "
    "(three of a kind, or a run of three in one suit; honours never run) and a pair, or seven distinct pairs. "
    "List every tile that completes the 13-tile hand, except one whose four copies are all in the hand. "
)
#: The output-format sentence of the ``full`` prompt, per trace style (it must describe the few-shot targets).
FORMAT_TEXT: dict[str, str] = {
    "waits": "For each, write 'tile: melds and pair'; end with 'Answer: ' and the tiles.",
    "candidates": "For each candidate tile, write 'tile: melds and pair' or 'tile: no'; end with 'Answer: ' and "
    "the tiles.",
    "suits": "Write each suit as its tiles and its melds, or 'open'; then every split of the open suits into "
    "melds plus a leftover as 'melds + leftover = tiles that complete it'; end with 'Answer: ' and all those tiles.",
    "decompose": "Write every split of the hand into complete melds plus a leftover as 'melds + leftover = "
    "tiles that complete the leftover'; end with 'Answer: ' and all those tiles.",
}

_TRACE_LINE_RE = re.compile(r"^\s*(\d[mpsz])\s*:\s*(.*?)\s*$", re.IGNORECASE)
_NO_WORDS = {"no", "-", "none", "x"}
_DECOMPOSE_LINE_RE = re.compile(r"^\s*([^=+]*?)\s*\+\s*([^=+]*?)\s*=\s*(.*?)\s*$")


# --------------------------------------------------------------------------------------------------------
# The verifier: which tiles complete a hand (rules from the mahjong package's Agari).


def _is_kokushi(counts: Sequence[int]) -> bool:
    """Thirteen orphans: one of each terminal and honour, one of them twice, nothing else."""
    orphans = (0, 8, 9, 17, 18, 26, *range(27, 34))
    return sum(counts) == 14 and all(counts[i] >= 1 for i in orphans) and sum(counts[i] for i in orphans) == 14


def candidate_tiles(counts: Sequence[int]) -> list[int]:
    """Tile kinds that could complete the hand: fewer than four held, and within two numbers of a held tile
    of the same suit (any run, set or pair holding the added tile needs such a neighbour), or a held honour.

    Every wait is a candidate (the brute-force test checks this on random hands); most candidates are not
    waits.
    """
    out: list[int] = []
    for start in SUIT_STARTS:
        for n in range(9):
            if counts[start + n] < COPIES and any(counts[start + m] for m in range(max(0, n - 2), min(8, n + 2) + 1)):
                out.append(start + n)
    out.extend(k for k in range(HONOURS, N_KINDS) if 0 < counts[k] < COPIES)
    return out


def winning_tiles(counts: Sequence[int]) -> tuple[int, ...]:
    """Every tile kind (34-index, ascending) that completes a 13-tile hand under the module's rules.

    Tries each :func:`candidate_tiles` kind with ``mahjong.agari.Agari.is_agari`` (standard form or seven
    distinct pairs), rejecting thirteen orphans. About 15 Agari calls per hand (~75 µs).

    Raises:
        ValueError: not 34 counts, not 13 tiles, or a count outside 0..4.
    """
    _check_counts(counts, HAND_SIZE)
    work = list(counts)
    waits = []
    for kind in candidate_tiles(counts):
        work[kind] += 1
        if Agari.is_agari(work) and not _is_kokushi(work):
            waits.append(kind)
        work[kind] -= 1
    return tuple(waits)


def _check_counts(counts: Sequence[int], size: int) -> None:
    if len(counts) != N_KINDS:
        raise ValueError(f"expected {N_KINDS} tile counts, got {len(counts)}")
    if any(c < 0 or c > COPIES for c in counts):
        raise ValueError(f"tile counts must be 0..{COPIES}, got {list(counts)}")
    if sum(counts) != size:
        raise ValueError(f"expected {size} tiles, got {sum(counts)}")


# --------------------------------------------------------------------------------------------------------
# The decomposer: every way to arrange 14 tiles (own implementation, independent of the package).


@lru_cache(maxsize=1 << 17)
def _block_arrangements(block: tuple[int, ...], runs: bool) -> tuple[tuple[Group, ...], ...]:
    """Every way to split one suit's counts (or the honours' counts, ``runs=False``) into sets, runs and
    one pair if the block holds 3k+2 tiles. Groups use block-local indices. Empty tuple when impossible."""
    total = sum(block)
    if total % 3 == 1:
        return ()
    found: set[tuple[Group, ...]] = set()
    counts = list(block)
    acc: list[Group] = []

    def walk(i: int, pair_left: bool) -> None:
        while i < len(counts) and counts[i] == 0:
            i += 1
        if i == len(counts):
            if not pair_left:
                found.add(tuple(sorted(acc)))
            return
        # The lowest remaining tile must start a group: a set, the pair, or a run upwards.
        if counts[i] >= 3:
            counts[i] -= 3
            acc.append((i, SET))
            walk(i, pair_left)
            acc.pop()
            counts[i] += 3
        if pair_left and counts[i] >= 2:
            counts[i] -= 2
            acc.append((i, PAIR))
            walk(i, False)
            acc.pop()
            counts[i] += 2
        if runs and i + 2 < len(counts) and counts[i + 1] and counts[i + 2]:
            for j in (i, i + 1, i + 2):
                counts[j] -= 1
            acc.append((i, RUN))
            walk(i, pair_left)
            acc.pop()
            for j in (i, i + 1, i + 2):
                counts[j] += 1

    walk(0, total % 3 == 2)
    return tuple(sorted(found))


def arrangements(counts: Sequence[int]) -> tuple[Arrangement, ...]:
    """Every complete arrangement of a 14-tile hand: four melds and a pair, then seven distinct pairs.

    Each arrangement is a tuple of ``(lowest tile's 34-index, shape)`` groups in tile order; the standard
    arrangements come first, sorted. Empty when the hand is not complete. Counts above four are allowed
    (so a "fifth copy" can be examined), which the verifier never produces.

    Raises:
        ValueError: not 34 counts or not 14 tiles.
    """
    if len(counts) != N_KINDS or sum(counts) != 14:
        raise ValueError(f"expected 34 counts summing to 14, got {len(counts)} counts summing to {sum(counts)}")
    blocks = [(start, tuple(counts[start : start + 9]), True) for start in SUIT_STARTS]
    blocks.append((HONOURS, tuple(counts[HONOURS:]), False))
    per_block: list[list[tuple[Group, ...]]] = []
    pairs = 0
    for start, block, runs in blocks:
        options = _block_arrangements(block, runs)
        if not options:
            per_block = []
            break
        pairs += sum(block) % 3 == 2
        per_block.append([tuple((start + i, shape) for i, shape in groups) for groups in options])
    out: list[Arrangement] = []
    if per_block and pairs == 1:
        out = sorted(tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*per_block))
    if sum(1 for c in counts if c == 2) == 7:
        out.append(tuple((k, PAIR) for k in range(N_KINDS) if counts[k] == 2))
    return tuple(out)


# --------------------------------------------------------------------------------------------------------
# Traces


def render_trace(counts: Sequence[int], waits: Sequence[int], style: TraceStyle = "waits") -> tuple[str, int]:
    """The reasoning trace of a 13-tile hand (format in the module docstring) and its total number of
    complete arrangements over all waits (the complexity measure).

    Raises:
        RuntimeError: a wait the verifier found has no arrangement (verifier and decomposer disagree).
    """
    lines: dict[int, str] = {}
    total = 0
    work = list(counts)
    for kind in waits:
        work[kind] += 1
        found = arrangements(work)
        work[kind] -= 1
        if not found:
            raise RuntimeError(f"verifier says {TILES[kind]} completes {format_hand(counts)} but no arrangement does")
        total += len(found)
        lines[kind] = f"{TILES[kind]}: {format_arrangement(found[0])}"
    if style == "decompose":
        return "\n".join(decompose_lines(counts, waits)), total
    if style == "suits":
        solved = tuple(suit_waits(counts))
        if solved != tuple(waits):
            raise RuntimeError(f"per-suit solver gives {solved} for {format_hand(counts)}, verifier {tuple(waits)}")
        return "\n".join([*suit_lines(counts), *decompose_lines(counts, waits, omit_closed=True)]), total
    if style == "candidates":
        for kind in candidate_tiles(counts):
            lines.setdefault(kind, f"{TILES[kind]}: no")
    return "\n".join(lines[k] for k in sorted(lines)), total


def _shape_waits(counts: Sequence[int], leftover: Sequence[int]) -> list[int]:
    """Tiles that complete a leftover shape (34-indices, ascending), minus those whose 4 copies are held.

    ``leftover`` (sorted 34-indices) is one tile (single wait), two pairs (either pair becomes a set) or a pair
    plus two tiles of one suit one or two apart (the run they start)."""
    out: set[int] = set()
    if len(leftover) == 1:
        out.add(leftover[0])
    elif len(leftover) == 4:
        kinds = sorted(set(leftover))
        pairs = [k for k in kinds if leftover.count(k) >= 2]
        if len(kinds) == 2 and all(leftover.count(k) == 2 for k in kinds):
            out.update(kinds)
        elif pairs:
            rest = list(leftover)
            rest.remove(pairs[0])
            rest.remove(pairs[0])
            a, b = sorted(rest)
            suit_start = next((st for st in SUIT_STARTS if st <= a < st + 9), None)
            if suit_start is not None and suit_start <= b < suit_start + 9:
                if b - a == 1:
                    out.update(k for k in (a - 1, b + 1) if suit_start <= k < suit_start + 9)
                elif b - a == 2:
                    out.add(a + 1)
    return sorted(k for k in out if counts[k] < COPIES)


def _format_tiles_group(kinds: Sequence[int]) -> str:
    """Tiles of one suit as one group token: ``[0, 2]`` -> ``"13m"``, ``[30]`` -> ``"4z"``."""
    return "".join(TILES[k][0] for k in sorted(kinds)) + TILES[kinds[0]][1]


def decompose_lines(counts: Sequence[int], waits: Sequence[int], omit_closed: bool = False) -> list[str]:
    """Forward reasoning for a 13-tile hand: every way to split it into complete groups plus a leftover
    shape, and the tiles that complete that shape (``trace="decompose"``).

    Line format ``<complete groups> + <leftover> = <tiles>``: four melds + one tile (``123m 456p 789s 111z +
    2z = 2z``); three melds + two pairs (``... + 11z 22z = 1z 2z``); three melds + a pair + two tiles of a suit
    (``... + 99s 78s = 6s 9s``); six pairs + one tile (seven pairs). Each line names only tiles not already
    held four times. The union of the lines' tiles is the answer; the generator checks that it equals
    :func:`winning_tiles`.

    ``omit_closed`` (the ``suits`` trace): leave out the melds of suits that are melds only
    (:func:`~stratos_train.tasks.mahjong_suits.open_suits`); a wait never lies in one, so the lines show only
    the open suits, ordered by their text (melds first, so the lines run like a search over the melds).

    Raises:
        RuntimeError: the lines' union differs from ``waits`` (decomposer and verifier disagree).
    """
    closed = set(range(4)) - set(open_suits(counts)) if omit_closed else set()
    found: dict[tuple[tuple[Group, ...], tuple[int, ...]], list[int]] = {}
    work = list(counts)
    for wait in waits:
        work[wait] += 1
        for arrangement in arrangements(work):
            seven_pairs = all(shape == PAIR for _, shape in arrangement)
            for index, group in enumerate(arrangement):
                tiles = group_kinds(group)
                if wait not in tiles:
                    continue
                tiles.remove(wait)
                others = arrangement[:index] + arrangement[index + 1 :]
                if group[1] == PAIR or seven_pairs:  # single wait: everything else is complete
                    complete, leftover = tuple(others), tuple(tiles)
                else:
                    complete = tuple(g for g in others if g[1] != PAIR)
                    pair = [k for g in others if g[1] == PAIR for k in group_kinds(g)]
                    leftover = tuple(sorted(pair + tiles))
                if closed and not seven_pairs:
                    complete = tuple(g for g in complete if g[0] // 9 not in closed)
                key = (tuple(sorted(complete)), leftover)
                if key not in found:
                    found[key] = _shape_waits(counts, leftover)
        work[wait] -= 1
    lines: list[tuple[tuple[int, ...], str]] = []
    union: set[int] = set()
    for (complete, leftover), shape_waits in found.items():
        if not shape_waits:
            continue
        union.update(shape_waits)
        lines.append(
            (
                tuple(shape_waits),
                f"{format_arrangement(complete)} + {_format_leftover(leftover)} = "
                + " ".join(TILES[k] for k in shape_waits),
            )
        )
    if union != set(waits):
        raise RuntimeError(f"decomposition of {format_hand(counts)} gives {sorted(union)}, verifier {list(waits)}")
    if omit_closed:
        return sorted(text.lstrip() for _, text in lines)
    return [text for _, text in sorted(lines)]


def _format_leftover(leftover: Sequence[int]) -> str:
    """``(5,)`` -> ``"6m"``; two pairs -> ``"11z 22z"``; pair + two tiles -> ``"99s 78s"`` (pair first)."""
    if len(leftover) == 1:
        return TILES[leftover[0]]
    kinds = sorted(set(leftover))
    pairs = [k for k in kinds if leftover.count(k) >= 2]
    if len(kinds) == 2 and all(leftover.count(k) == 2 for k in kinds):
        return " ".join(_format_tiles_group([k, k]) for k in kinds)
    rest = list(leftover)
    rest.remove(pairs[0])
    rest.remove(pairs[0])
    return f"{_format_tiles_group([pairs[0], pairs[0]])} {_format_tiles_group(rest)}"


def hand_complexity(counts: Sequence[int]) -> int:
    """Complete arrangements summed over every wait of a 13-tile hand (0 for a hand with no wait)."""
    return render_trace(counts, winning_tiles(counts))[1]


def check_trace(counts: Sequence[int], reasoning: str) -> tuple[list[str], set[str] | None]:
    """Check the trace lines in ``reasoning`` against a 13-tile hand.

    Returns ``(problems, claimed)``: one sentence per false line, and the tiles the trace claims as waits
    (None when the reasoning has no trace line at all). Other lines (prose, the answer line) are ignored.
    """
    waits = {TILES[k] for k in winning_tiles(counts)}
    problems: list[str] = []
    claimed: set[str] = set()
    seen_any = False
    for line in reasoning.splitlines():
        decomposed = _DECOMPOSE_LINE_RE.match(line)
        if decomposed and not line.lower().lstrip().startswith("answer"):
            seen_any = True
            problem, stated = _check_decompose_line(counts, *decomposed.groups())
            if problem:  # a ``suits`` line omits the melds-only suits: they complete it
                closed = " ".join(format_group(g) for g in closed_suit_groups(counts))
                complete, leftover, tiles = decomposed.groups()
                if closed:
                    retry = _check_decompose_line(counts, f"{complete} {closed}", leftover, tiles)[0]
                    if retry is None or problem.startswith("the groups hold"):
                        problem = retry
            claimed.update(stated)
            if problem:
                problems.append(f"{line.strip()!r}: {problem}")
            continue
        suit_line = SUIT_LINE_RE.match(line)
        if suit_line:
            seen_any = True
            problem = check_suits_line(counts, *suit_line.groups())
            if problem:
                problems.append(f"{line.strip()!r}: {problem}")
            continue
        match = _TRACE_LINE_RE.match(line)
        if not match:
            continue
        seen_any = True
        tile, body = match.group(1).lower(), match.group(2)
        if tile not in TILE_INDEX:
            problems.append(f"{tile} is not a tile")
            continue
        if body.lower() in _NO_WORDS:
            if tile in waits:
                problems.append(f"{tile} is a winning tile, the trace says no")
            continue
        claimed.add(tile)
        problem = _check_arrangement_text(counts, tile, body)
        if problem:  # a ``suits`` line shows only the open suits: the melds-only suits complete it
            closed = " ".join(format_group(g) for g in closed_suit_groups(counts))
            if closed and _check_arrangement_text(counts, tile, f"{body} {closed}") is None:
                problem = None
        if problem:
            problems.append(f"{tile}: {problem}")
        elif tile not in waits:
            problems.append(f"{tile}: all {COPIES} copies are in the hand")
    return problems, (claimed if seen_any else None)


def _parse_group_token(token: str) -> list[int] | None:
    m = GROUP_RE.match(token)
    if not m:
        return None
    names = [f"{d}{m.group(2).lower()}" for d in m.group(1)]
    if any(n not in TILE_INDEX for n in names):
        return None
    return [TILE_INDEX[n] for n in names]


def _group_shape(kinds: Sequence[int]) -> int | None:
    """SET, RUN or PAIR for a complete group's tile kinds, else None."""
    if len(kinds) == 2 and kinds[0] == kinds[1]:
        return PAIR
    if len(kinds) == 3 and len(set(kinds)) == 1:
        return SET
    if len(kinds) == 3 and kinds[0] < HONOURS and list(kinds) == list(range(kinds[0], kinds[0] + 3)):
        same_suit = any(st <= kinds[0] and kinds[2] < st + 9 for st in SUIT_STARTS)
        return RUN if same_suit else None
    return None


def _check_decompose_line(
    counts: Sequence[int], complete: str, leftover: str, waits: str
) -> tuple[str | None, set[str]]:
    """Check one ``decompose`` line against a 13-tile hand: ``(why it is false or None, tiles it states)``."""
    stated = set(parse_tiles(waits))
    groups = [_parse_group_token(t) for t in complete.split()]
    rest_tokens = [_parse_group_token(t) for t in leftover.split()]
    if any(g is None for g in groups) or any(g is None for g in rest_tokens) or not rest_tokens:
        return "not tile groups", stated
    shapes = [_group_shape(g) for g in groups if g is not None]
    if any(shape is None for shape in shapes):
        return "a complete group is neither a set, a run nor a pair", stated
    used = [0] * N_KINDS
    for g in [*groups, *rest_tokens]:
        for k in g or ():
            used[k] += 1
    if used != list(counts):
        return f"the groups hold {format_hand(used)}, not the hand", stated
    left = sorted(k for g in rest_tokens for k in (g or ()))
    melds = sum(1 for shape in shapes if shape in (SET, RUN))
    pairs = [g[0] for g, shape in zip(groups, shapes, strict=True) if g is not None and shape == PAIR]
    valid = (
        (melds == 4 and not pairs and len(left) == 1)
        or (melds == 0 and len(pairs) == 6 and len(set(pairs)) == 6 and len(left) == 1 and left[0] not in pairs)
        or (melds == 3 and not pairs and len(left) == 4)
    )
    if not valid:
        return "not four melds + one tile, six pairs + one tile, or three melds + four tiles", stated
    expected = {TILES[k] for k in _shape_waits(counts, left)}
    if stated != expected:
        return (
            f"that shape is completed by {' '.join(sorted(expected, key=TILE_INDEX.__getitem__)) or 'nothing'}",
            stated,
        )
    return None, stated


def _check_arrangement_text(counts: Sequence[int], tile: str, body: str) -> str | None:
    """Why ``body`` (``"123m 456p 789s 111z 22z"``) is not a complete arrangement of hand + tile, or None."""
    tokens = body.split()
    if not tokens:
        return "no groups"
    used = [0] * N_KINDS
    melds = pairs = 0
    pair_kinds: list[int] = []
    for token in tokens:
        m = re.fullmatch(r"(\d{2,3})([mpsz])", token, re.IGNORECASE)
        if not m:
            return f"{token!r} is not a group"
        digits, suit = m.group(1), m.group(2).lower()
        names = [f"{d}{suit}" for d in digits]
        if any(n not in TILE_INDEX for n in names):
            return f"{token!r} holds a tile that does not exist"
        kinds = [TILE_INDEX[n] for n in names]
        same = len(set(kinds)) == 1
        is_run = suit != "z" and len(kinds) == 3 and kinds == list(range(kinds[0], kinds[0] + 3))
        if len(kinds) == 2 and same:
            pairs += 1
            pair_kinds.append(kinds[0])
        elif len(kinds) == 3 and (same or is_run):
            melds += 1
        else:
            return f"{token!r} is neither a set, a run nor a pair"
        for k in kinds:
            used[k] += 1
    expected = list(counts)
    expected[TILE_INDEX[tile]] += 1
    if used != expected:
        return f"the groups hold {format_hand(used)}, not the hand plus {tile}"
    if (melds, pairs) == (4, 1):
        return None
    if (melds, pairs) == (0, 7):
        return None if len(set(pair_kinds)) == 7 else "seven pairs must be seven different pairs"
    return f"{melds} melds and {pairs} pairs is not four melds and a pair, nor seven pairs"


# --------------------------------------------------------------------------------------------------------
# Reverse synthesis


def structural_key(counts: Sequence[int]) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """A key shared by every hand with the same structure: suits permuted (m/p/s), a suit mirrored
    (n -> 10 - n) or honours permuted. Each preserves the number and shape of waits, so no structural twin of
    an eval hand may be trained on."""
    suits = []
    for start in SUIT_STARTS:
        block = tuple(counts[start : start + 9])
        suits.append(min(block, block[::-1]))
    return tuple(sorted(suits)), tuple(sorted(counts[HONOURS:], reverse=True))


def split_of(counts: Sequence[int]) -> Split:
    """Which side a hand belongs to: a salted hash of :func:`structural_key`, ``eval`` for a fixed
    :data:`EVAL_SHARE` of structures. Independent of any seed."""
    digest = hashlib.blake2b(repr(structural_key(counts)).encode(), digest_size=8, person=_SPLIT_SALT).digest()
    return "eval" if int.from_bytes(digest, "big") < EVAL_SHARE * 2**64 else "train"


@dataclass(frozen=True)
class Stratum:
    """A generation stratum: ``waits`` is the bucket's lower bound (the top bucket is open-ended)."""

    waits: int
    honours: bool

    def label(self) -> str:
        top = "+" if self.waits == WAIT_BUCKETS[-1] else ""
        noun = "wait" if self.waits == 1 and not top else "waits"
        return f"{self.waits}{top} {noun}, {'honours' if self.honours else 'no honours'}"


STRATA: tuple[Stratum, ...] = tuple(Stratum(w, h) for w in WAIT_BUCKETS for h in (False, True))

# Proposal distribution per waits bucket: (how many suits the melds use, probability a meld is a run).
# Concentrating melds in one suit is what makes many waits; this only sets how fast a stratum fills, never
# which hands are valid.
_PROPOSALS: dict[int, tuple[tuple[int, ...], float]] = {
    1: ((2, 3), 0.75),
    2: ((2, 3), 0.5),
    3: ((1, 2), 0.5),
    4: ((1,), 0.5),
}


def _propose(rng: random.Random, stratum: Stratum) -> list[int]:
    """A complete 14-tile hand (four melds + pair, at most four copies of a tile) aimed at ``stratum``."""
    suit_options, p_run = _PROPOSALS[stratum.waits]
    honour_groups = 0
    if stratum.honours:
        honour_groups = 1 if stratum.waits >= 3 else rng.choice((1, 2))
    while True:
        suits = rng.sample(SUIT_STARTS, rng.choice(suit_options))
        pair_slot = rng.randrange(5)
        honour_slots = set(rng.sample(range(5), honour_groups))
        counts = [0] * N_KINDS
        for slot in range(5):
            size = 2 if slot == pair_slot else 3
            if slot in honour_slots:
                counts[HONOURS + rng.randrange(7)] += size
                continue
            start = rng.choice(suits)
            if size == 3 and rng.random() < p_run:
                n = rng.randrange(7)
                for k in (start + n, start + n + 1, start + n + 2):
                    counts[k] += 1
            else:
                counts[start + rng.randrange(9)] += size
        if max(counts) <= COPIES:
            return counts


@dataclass
class GenerationReport:
    """What :func:`generate_examples` did (counts of proposed 13-tile hands)."""

    examples: list[Example]
    proposals: int = 0
    duplicates_skipped: int = 0
    other_split_skipped: int = 0
    full_stratum_skipped: int = 0
    per_stratum: dict[str, int] = field(default_factory=dict)


def stratum_quotas(n: int, weights: Mapping[str, float] | None = None) -> dict[Stratum, int]:
    """Examples per stratum for ``n`` examples: equal shares (the first ``n % 8`` strata one more), or shares
    proportional to ``weights`` (stratum label -> weight >= 0; missing labels weigh 0) by largest remainder.

    Raises:
        ValueError: an unknown stratum label, a negative weight, or all weights 0.
    """
    labels = {s.label(): s for s in STRATA}
    if weights is None:
        weights = dict.fromkeys(labels, 1.0)
    unknown = sorted(set(weights) - set(labels))
    if unknown:
        raise ValueError(f"unknown strata {unknown}; known: {sorted(labels)}")
    counts = largest_remainder(n, {label: weights.get(label, 0.0) for label in labels})
    return {labels[label]: count for label, count in counts.items()}


def generate_examples(
    n: int,
    seed: int,
    split: Split,
    trace: TraceStyle = "waits",
    max_proposals: int | None = None,
    weights: Mapping[str, float] | None = None,
) -> GenerationReport:
    """``n`` reverse-synthesised examples of ``split``, stratified, deduplicated, deterministic in ``seed``.

    Strata (:data:`STRATA`) get equal shares, or shares proportional to ``weights`` (see
    :func:`stratum_quotas`; the closed Knowledge Injection loop draws toward the strata its student fails).
    Examples come out shuffled (seeded). About 10k examples/s on one core.

    Raises:
        ValueError: ``n`` < 1 or bad ``weights``.
        TaskDataError: a stratum could not be filled within ``max_proposals`` proposals (default 1000 + 200 n).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    limit = max_proposals if max_proposals is not None else 1000 + 200 * n
    rng = random.Random(seed)
    quota = stratum_quotas(n, weights)
    need = dict(quota)
    seen: set[tuple[int, ...]] = set()
    report = GenerationReport(examples=[])
    left = n
    while left:
        if report.proposals >= limit:
            short = {s.label(): c for s, c in need.items() if c}
            raise TaskDataError(f"mahjong generator: strata still short after {limit} proposals: {short}")
        report.proposals += 1
        target = max(STRATA, key=lambda s: need[s] / quota[s] if quota[s] else -1.0)
        hand = _propose(rng, target)
        tiles = [k for k in range(N_KINDS) for _ in range(hand[k])]
        hand[rng.choice(tiles)] -= 1
        key = tuple(hand)
        if key in seen:
            report.duplicates_skipped += 1
            continue
        if split_of(hand) != split:
            report.other_split_skipped += 1
            continue
        waits = winning_tiles(hand)
        honours = any(hand[HONOURS:])
        stratum = Stratum(min(len(waits), WAIT_BUCKETS[-1]), honours)
        if need.get(stratum, 0) == 0:
            report.full_stratum_skipped += 1
            continue
        need[stratum] -= 1
        left -= 1
        seen.add(key)
        report.examples.append(_make_example(hand, waits, stratum, trace))
    rng.shuffle(report.examples)
    report.per_stratum = {s.label(): quota[s] for s in STRATA}
    return report


#: Draws per vectorised batch of the random-tenpai sampler (~0.2 s each here).
_DRAW_BATCH = 100_000


def random_tenpai_examples(
    n: int, seed: int, split: Split, trace: TraceStyle = "waits", max_draws: int | None = None
) -> GenerationReport:
    """``n`` random tenpai hands of ``split``: uniform 13-tile draws from the 136 tiles, kept when they wait.

    Rejection sampling, so the hands follow the distribution of real random draws conditioned on having at
    least one winning tile (about 1 draw in 12,000 here), not the generator's construction: no stratum quota,
    more seven-pairs and two-open-suit hands. Draws come in vectorised batches (numpy): 13 tile indices with
    replacement, rows with a repeated tile dropped (what is left is uniform over 13-tile subsets); a row with
    two or more isolated singles (a single with no tile of its suit within two numbers, or a single honour) is
    dropped before solving, as no tenpai hand has two. Survivors are solved per suit
    (:func:`stratos_train.tasks.mahjong_suits.suit_waits`), confirmed by :func:`winning_tiles`, deduplicated
    and split by :func:`split_of` like the generator's. ~10 eval-split hands/s on one core.

    Raises:
        ValueError: ``n`` < 1.
        TaskDataError: fewer than ``n`` hands after ``max_draws`` draws (default 500,000 n + 10 batches;
            ~100,000 n are needed).
        RuntimeError: the per-suit solver and the verifier disagree on a hand.
    """
    import numpy as np  # the only numpy user among the tasks: the rest stays stdlib-only

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    limit = max_draws if max_draws is not None else 500_000 * n + 10 * _DRAW_BATCH
    rng = np.random.default_rng([seed, 0x7E4])
    report = GenerationReport(examples=[])
    seen: set[tuple[int, ...]] = set()
    kinds = np.arange(N_KINDS)
    while len(report.examples) < n:
        if report.proposals >= limit:
            raise TaskDataError(f"random tenpai: {len(report.examples)} of {n} hands after {limit} draws")
        draws = np.sort(rng.integers(0, N_KINDS * COPIES, size=(_DRAW_BATCH, HAND_SIZE)), axis=1)
        report.proposals += _DRAW_BATCH
        draws = draws[(np.diff(draws, axis=1) != 0).all(axis=1)]
        counts = ((draws // COPIES)[:, :, None] == kinds).sum(axis=1)  # (rows, 34)
        suits = np.zeros((len(counts), 3, 13), dtype=counts.dtype)
        suits[:, :, 2:11] = counts[:, :HONOURS].reshape(-1, 3, 9)
        near = suits[:, :, 0:9] + suits[:, :, 1:10] + suits[:, :, 3:12] + suits[:, :, 4:13]
        isolated = ((suits[:, :, 2:11] == 1) & (near == 0)).sum(axis=(1, 2)) + (counts[:, HONOURS:] == 1).sum(axis=1)
        for row in counts[isolated <= 1]:
            hand = [int(c) for c in row]
            if not suit_waits(hand):
                continue
            key = tuple(hand)
            if key in seen:
                report.duplicates_skipped += 1
                continue
            if split_of(hand) != split:
                report.other_split_skipped += 1
                continue
            waits = winning_tiles(hand)
            if tuple(suit_waits(hand)) != waits:
                raise RuntimeError(f"per-suit solver and verifier disagree on {format_hand(hand)}")
            seen.add(key)
            stratum = Stratum(min(len(waits), WAIT_BUCKETS[-1]), any(hand[HONOURS:]))
            report.examples.append(_make_example(hand, waits, stratum, trace, source="random-tenpai"))
            if len(report.examples) == n:
                break
    counted: dict[str, int] = {}
    for example in report.examples:
        counted[example.meta["stratum"]] = counted.get(example.meta["stratum"], 0) + 1
    report.per_stratum = counted
    return report


def _make_example(
    hand: Sequence[int], waits: Sequence[int], stratum: Stratum, trace: TraceStyle, source: str = "generator"
) -> Example:
    reasoning, total = render_trace(hand, waits, trace)
    notation = format_hand(hand)
    return Example(
        id=f"mj-{notation}",
        problem={"hand": notation},
        answer=tuple(TILES[k] for k in waits),
        reasoning=reasoning,
        meta={
            "n_waits": len(waits),
            "honours": stratum.honours,
            "stratum": stratum.label(),
            "arrangements": total,
            "source": source,
        },
    )


def example_for_hand(notation: str, trace: TraceStyle = "waits") -> Example:
    """An example for a given 13-tile hand (any hand, also one with no wait), solved by the verifier.

    Raises:
        ValueError: the notation is not a valid 13-tile hand (see :func:`parse_hand`).
    """
    hand = parse_hand(notation)
    waits = winning_tiles(hand)
    return _make_example(hand, waits, Stratum(min(len(waits), WAIT_BUCKETS[-1]), any(hand[HONOURS:])), trace)


# --------------------------------------------------------------------------------------------------------
# The task


class MahjongTask(TaskBase):
    """Mahjong winning tiles (module docstring has the rules, notation, trace and generator).

    Args:
        prompt_style: ``compact`` (one short user line, for a student fine-tuned on the format: prompt and
            target average ~140 tokens with SmolLM2's chat template) or ``full`` (a system message with the
            rules and the output format, for teachers and zero-shot use; ~100 tokens more).
        trace: ``suits`` (default: suit lines, then the splits of the open suits; see
            :mod:`stratos_train.tasks.mahjong_suits`), ``waits`` (one line per winning tile), ``candidates``
            (also a ``no`` line per other candidate tile) or ``decompose`` (every split of the whole hand into
            complete groups + a leftover and what completes it).
        random_eval: offer the ``random-tenpai`` held-out set (:meth:`extra_eval_sets`).
    """

    name = NAME
    # The task's facts are the contract's (stratos_contract.tasks), the ones the Lambdas plan with.
    metric = TASKS[NAME].required_metric()
    has_verifier = TASKS[NAME].has_verifier
    has_generator = TASKS[NAME].has_generator
    complexity_unit = TASKS[NAME].complexity_unit

    #: Default split sizes when ``n`` is None: the spec's ``train_size`` / ``eval_size`` defaults.
    DEFAULT_SIZES: ClassVar[dict[str, int]] = {"train": 2000, "eval": 200}

    def __init__(
        self, prompt_style: PromptStyle = "compact", trace: TraceStyle = "suits", random_eval: bool = True
    ) -> None:
        if prompt_style not in ("full", "compact"):
            raise ValueError(f"prompt_style must be 'full' or 'compact', got {prompt_style!r}")
        if trace not in TRACE_STYLES:
            raise ValueError(f"trace must be one of {', '.join(TRACE_STYLES)}, got {trace!r}")
        self.prompt_style: PromptStyle = prompt_style
        self.trace: TraceStyle = trace
        self.random_eval = bool(random_eval)

    def examples(self, split: Split, n: int | None = None, seed: int = 0) -> list[Example]:
        count = self.DEFAULT_SIZES[split] if n is None else n
        return generate_examples(count, seed, split, self.trace).examples

    def strata(self) -> tuple[str, ...]:
        """Number of waits (1, 2, 3, 4+) x whether the hand holds an honour: eight strata."""
        return tuple(s.label() for s in STRATA)

    def stratum(self, example: Example) -> str | None:
        label = example.meta.get("stratum")
        if isinstance(label, str):
            return label
        hand = parse_hand(example.problem["hand"])
        return Stratum(min(len(winning_tiles(hand)), WAIT_BUCKETS[-1]), any(hand[HONOURS:])).label()

    def stratified_examples(self, split: Split, n: int, seed: int, weights: Mapping[str, float]) -> list[Example]:
        return generate_examples(n, seed, split, self.trace, weights=weights).examples

    def extra_eval_sets(self, n: int, seed: int) -> dict[str, list[Example]]:
        """``random-tenpai``: uniform random 13-tile draws that wait (:func:`random_tenpai_examples`), held out
        by the same structural split; empty when the task was built with ``random_eval=False``."""
        if not self.random_eval:
            return {}
        return {RANDOM_TENPAI: random_tenpai_examples(n, seed, "eval", self.trace).examples}

    def _instructions(self) -> str | None:
        return RULES_TEXT + FORMAT_TEXT[self.trace] if self.prompt_style == "full" else None

    def _question(self, example: Example) -> list[Message]:
        hand = example.problem["hand"]
        text = f"Hand: {hand}" if self.prompt_style == "full" else f"Mahjong winning tiles of {hand}?"
        return [{"role": "user", "content": text}]

    def target(self, example: Example) -> str:
        tiles = " ".join(example.answer) if example.answer else "none"
        answer_line = f"{self.ANSWER_PREFIX}{tiles}"
        return f"{example.reasoning}\n{answer_line}" if example.reasoning else answer_line

    def extract_answer(self, completion: str) -> tuple[str, ...] | None:
        """The tiles on the last answer line (``Answer: 3m 6m``; any order, separators, duplicates; ``none``
        or no tile there = the empty set). Without an answer line, the tiles of the last line that has some
        and is not a trace line (``3m: ...``); None when there is no such line."""
        segment = answer_segment(completion)
        if segment is not None:
            return parse_tiles(segment)
        for line in reversed(completion.splitlines()):
            if _TRACE_LINE_RE.match(line):
                continue
            tiles = parse_tiles(line)
            if tiles:
                return tiles
        return None

    def score(self, example: Example, completion: str) -> Score:
        """Exact set match of the extracted tiles; F1 of the two sets as partial credit."""
        predicted = self.extract_answer(completion)
        reference = _as_tiles(example.answer)
        if predicted is None:
            return Score(correct=False, credit=0.0, predicted=None)
        return Score(correct=set(predicted) == set(reference), credit=set_f1(predicted, reference), predicted=predicted)

    def verify(self, example: Example, answer: Answer, reasoning: str | None = None) -> Verdict:
        """Solve the hand from first principles and compare: the answer must be exactly the winning tiles;
        trace lines in ``reasoning`` (if any) must each be true, claim exactly the answer's tiles, and an
        answer line in it must agree. The reference in ``example.answer`` is not consulted."""
        hand = parse_hand(example.problem["hand"])
        waits = tuple(TILES[k] for k in winning_tiles(hand))
        given = _as_tiles(answer)
        reasons: list[str] = []
        if set(given) != set(waits):
            reasons.append(f"answer {' '.join(given) or 'none'} is not the winning tiles {' '.join(waits) or 'none'}")
        checked = False
        if reasoning:
            problems, claimed = check_trace(hand, reasoning)
            reasons.extend(problems)
            if claimed is not None:
                checked = True
                if claimed != set(given):
                    reasons.append(
                        f"the trace shows {' '.join(sorted(claimed, key=TILE_INDEX.__getitem__))}, the answer says "
                        f"{' '.join(given) or 'none'}"
                    )
            segment = answer_segment(reasoning)
            if segment is not None and set(parse_tiles(segment)) != set(given):
                reasons.append("the reasoning's answer line differs from the answer")
        return Verdict(ok=not reasons, reasons=tuple(reasons), reasoning_checked=checked)

    def complexity(self, example: Example) -> float:
        stored = example.meta.get("arrangements")
        if isinstance(stored, int):
            return float(stored)
        return float(hand_complexity(parse_hand(example.problem["hand"])))


def _as_tiles(answer: Answer | Iterable[str]) -> tuple[str, ...]:
    """A canonical tile tuple from an answer given as a tuple/list of names or as text."""
    if isinstance(answer, str):
        return parse_tiles(answer)
    return parse_tiles(" ".join(answer))
