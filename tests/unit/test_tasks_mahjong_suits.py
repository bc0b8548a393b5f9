"""The per-suit reduction, the ``suits`` trace and the random-tenpai sampler."""

from __future__ import annotations

import random

import pytest

from stratos_train.tasks import get_task
from stratos_train.tasks.mahjong import (
    HONOURS,
    RANDOM_TENPAI,
    TILES,
    MahjongTask,
    example_for_hand,
    format_hand,
    generate_examples,
    parse_hand,
    random_tenpai_examples,
    split_of,
    winning_tiles,
)
from stratos_train.tasks.mahjong_suits import meld_split, open_suits, pair_split, suit_lines, suit_waits


@pytest.fixture(scope="module")
def tenpai_eval():
    """60 random-tenpai eval hands (seed 1), shared by the tests below (sampling is the slow part)."""
    return random_tenpai_examples(60, 1, "eval", "suits")


def _random_hand(rng: random.Random) -> list[int]:
    counts = [0] * 34
    for tile in rng.sample(range(136), 13):
        counts[tile // 4] += 1
    return counts


def test_meld_split_is_greedy_and_exact() -> None:
    assert meld_split((1, 1, 1, 0, 0, 0, 0, 0, 0), True) == ((0, 2),)
    assert meld_split((3, 3, 3, 0, 0, 0, 0, 0, 0), True) == ((0, 0), (1, 0), (2, 0))
    assert meld_split((4, 1, 1, 0, 0, 0, 0, 0, 0), True) == ((0, 0), (0, 2))
    assert meld_split((1, 1, 0, 0, 0, 0, 0, 0, 0), True) is None
    assert meld_split((0, 0, 3, 0, 0, 0, 0), False) == ((2, 0),)
    assert meld_split((1, 1, 1, 0, 0, 0, 0), False) is None  # honours never run
    assert pair_split((1, 1, 1, 2, 0, 0, 0, 0, 0), True) == ((0, 2), (3, 1))


def test_suit_waits_agree_with_the_verifier(tenpai_eval) -> None:
    rng = random.Random(11)
    hands = [_random_hand(rng) for _ in range(20_000)]
    hands += [parse_hand(ex.problem["hand"]) for ex in generate_examples(4_000, 3, "train").examples]
    hands += [parse_hand(ex.problem["hand"]) for ex in tenpai_eval.examples]
    for hand in hands:
        assert tuple(suit_waits(hand)) == winning_tiles(hand), format_hand(hand)


def test_every_wait_is_within_one_number_of_a_held_tile_of_its_suit(tenpai_eval) -> None:
    for example in tenpai_eval.examples + generate_examples(2_000, 6, "train").examples:
        hand = parse_hand(example.problem["hand"])
        for kind in winning_tiles(hand):
            if kind >= HONOURS:
                assert hand[kind] > 0
            else:
                start = kind - kind % 9
                assert any(hand[k] for k in range(max(start, kind - 1), min(start + 9, kind + 2)))


def test_suits_trace_round_trips_through_the_verifier_on_10k_hands() -> None:
    task = MahjongTask(trace="suits")
    examples = generate_examples(10_000, 21, "train", "suits").examples
    examples += random_tenpai_examples(40, 22, "train", "suits").examples
    for example in examples:
        verdict = task.verify(example, example.answer, example.reasoning)
        assert verdict.ok and verdict.reasoning_checked, (example.problem, verdict.reasons)
        assert task.score(example, task.target(example)).correct


def test_suits_trace_shape() -> None:
    example = example_for_hand("1344456m456s555z", trace="suits")
    assert example.reasoning.splitlines() == ["m 1344456: open", "s 456: 456", "z 555: 555", "456m + 44m 13m = 2m"]
    seven_pairs = example_for_hand("1155m2288p3399s7z", trace="suits")
    assert "11m 55m 22p 88p 33s 99s + 7z = 7z" in seven_pairs.reasoning.splitlines()
    two_open = example_for_hand("123m456p789s11z23s", trace="suits")  # 23s waits 1s 4s over the pair 11z
    assert two_open.reasoning.splitlines()[-1] == "789s + 11z 23s = 1s 4s"
    assert open_suits(parse_hand("123m456p789s11z23s")) == [2, 3]
    nine_gates = example_for_hand("1112345678999m", trace="suits").reasoning.splitlines()
    assert nine_gates[0] == "m 1112345678999: open" and len(nine_gates) == 11
    assert nine_gates[1:] == sorted(nine_gates[1:])  # melds first, in order: the lines run like a search


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("m 134456: open", "the hand's m tiles are 1344456"),
        ("s 456: open", "s 456 is melds only"),
        ("s 456: 45 6", "'45' is not a meld"),
        ("z 555: 55 5", "not a meld"),
        ("456m + 44m 13m = 2m 5m", "that shape is completed by 2m"),
        ("345m + 44m 16m = 2m", "that shape is completed by nothing"),
        ("456m + 44m 13m 456s = 2m", "not the hand"),
    ],
)
def test_false_suits_lines_are_rejected(line: str, why: str) -> None:
    task = MahjongTask(trace="suits")
    example = example_for_hand("1344456m456s555z", trace="suits")
    verdict = task.verify(example, example.answer, f"{example.reasoning}\n{line}")
    assert not verdict.ok
    assert any(why in reason for reason in verdict.reasons), verdict.reasons


def test_random_tenpai_sampler_yields_only_tenpai_hands_of_its_split(tenpai_eval) -> None:
    eval_report = tenpai_eval
    train_report = random_tenpai_examples(60, 1, "train", "suits")
    train_keys = set()
    for example in train_report.examples:
        hand = parse_hand(example.problem["hand"])
        assert split_of(hand) == "train"
        train_keys.add(example.problem["hand"])
    for example in eval_report.examples:
        hand = parse_hand(example.problem["hand"])
        waits = winning_tiles(hand)
        assert waits and example.answer == tuple(TILES[k] for k in waits)
        assert split_of(hand) == "eval" and example.problem["hand"] not in train_keys
        assert example.meta["source"] == RANDOM_TENPAI
    assert len({ex.id for ex in eval_report.examples}) == 60
    assert eval_report.proposals > 60 * 5_000  # about one draw in 12,000 waits: really rejection sampled
    again = random_tenpai_examples(20, 1, "eval", "suits")  # same seed: the same hands, in the same order
    assert [e.id for e in again.examples] == [e.id for e in eval_report.examples[:20]]


def test_random_tenpai_hands_are_not_the_generators_distribution(tenpai_eval) -> None:
    """Seven-pairs-only hands, which the generator (four melds + a pair) never builds on purpose, show up."""
    examples = tenpai_eval.examples
    seven_pairs_only = [e for e in examples if sum(1 for c in parse_hand(e.problem["hand"]) if c == 2) == 6]
    assert seven_pairs_only


def test_task_exposes_the_random_eval_set_and_strata() -> None:
    task = get_task("mahjong-winning-tiles", trace="suits")
    sets = task.extra_eval_sets(5, 0)
    assert list(sets) == [RANDOM_TENPAI] and len(sets[RANDOM_TENPAI]) == 5
    assert get_task("mahjong-winning-tiles", random_eval=False).extra_eval_sets(5, 0) == {}
    assert len(task.strata()) == 8
    drawn = task.stratified_examples("train", 40, 0, {"4+ waits, honours": 3.0, "1 wait, no honours": 1.0})
    labels = [task.stratum(e) for e in drawn]
    assert labels.count("4+ waits, honours") == 30 and labels.count("1 wait, no honours") == 10


def test_suit_waits_reject_a_hand_that_is_not_13_tiles() -> None:
    with pytest.raises(ValueError, match="summing to 13"):
        suit_waits([1] * 14 + [0] * 20)
    assert suit_lines(parse_hand("1344456m456s555z"))[0] == "m 1344456: open"
