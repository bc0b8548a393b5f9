"""The forward 'decompose' trace: complete groups + leftover shape = the tiles that complete it."""

from __future__ import annotations

import pytest

from stratos_train.tasks import get_task
from stratos_train.tasks.mahjong import TILES, decompose_lines, parse_hand, winning_tiles


def _lines(hand: str) -> list[str]:
    counts = parse_hand(hand)
    return decompose_lines(counts, winning_tiles(counts))


def test_closed_wait():
    assert _lines("1344456m456s555z") == ["456m 456s 555z + 44m 13m = 2m"]


def test_two_sided_wait_is_one_line_with_two_tiles():
    assert _lines("34m112233p33344z") == ["123p 123p 333z + 44z 34m = 2m 5m"]


def test_fourth_copy_held_is_not_named():
    """Two pairs 77m and 11z, but all four 7m are in the hand: only 1z completes it."""
    assert _lines("44467777889m11z") == ["444m 678m 789m + 77m 11z = 1z"]


def test_seven_pairs_line():
    assert _lines("1122m3344p5566s7z") == ["11m 22m 33p 44p 55s 66s + 7z = 7z"]


def test_nine_gates_has_every_tile():
    lines = _lines("1112345678999m")
    named = {t for line in lines for t in line.split("= ")[1].split()}
    assert named == {f"{n}m" for n in range(1, 10)}


def test_generated_traces_verify_and_union_equals_answer():
    task = get_task("mahjong-winning-tiles", trace="decompose")
    for example in task.examples("train", 400, seed=3):
        verdict = task.verify(example, example.answer, example.reasoning)
        assert verdict.ok and verdict.reasoning_checked, (example.problem, verdict)
        counts = parse_hand(example.problem["hand"])
        assert tuple(example.answer) == tuple(TILES[k] for k in winning_tiles(counts))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda r: r.replace("= 2m", "= 2m 5m"), "completed by 2m"),
        (lambda r: r.replace("456s", "457s"), "neither a set"),
        (lambda r: r.replace("+ 44m 13m", "+ 44m 14m"), "not the hand"),
    ],
)
def test_false_lines_are_rejected(edit, reason):
    task = get_task("mahjong-winning-tiles", trace="decompose")
    from stratos_train.tasks.mahjong import example_for_hand

    example = example_for_hand("1344456m456s555z", trace="decompose")
    verdict = task.verify(example, example.answer, edit(example.reasoning))
    assert not verdict.ok
    assert any(reason in r for r in verdict.reasons), verdict.reasons
