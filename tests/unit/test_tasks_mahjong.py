"""Mahjong winning tiles: rules, verifier vs brute force, reverse synthesis, split, traces, scorer."""

from __future__ import annotations

import collections
import random
import time

import pytest
from mahjong.shanten import Shanten

from stratos_train.tasks import TaskError, get_task
from stratos_train.tasks.base import Example
from stratos_train.tasks.mahjong import (
    COPIES,
    EVAL_SHARE,
    STRATA,
    TILES,
    MahjongTask,
    arrangements,
    example_for_hand,
    format_hand,
    generate_examples,
    hand_complexity,
    parse_hand,
    parse_tiles,
    split_of,
    structural_key,
    winning_tiles,
)


def waits_of(notation: str) -> list[str]:
    return [TILES[k] for k in winning_tiles(parse_hand(notation))]


def brute_force_waits(counts: list[int]) -> tuple[int, ...]:
    """Independent check: the ``mahjong`` package's ``Shanten.calculate_shanten`` (a shanten search over
    blocks, not the ``Agari.is_agari`` bit test the verifier uses) on all 34 tile kinds, without the
    verifier's candidate pruning. Thirteen orphans off and no fifth copy of a tile, as the rules say."""
    waits = []
    for kind in range(34):
        if counts[kind] == COPIES:
            continue
        trial = list(counts)
        trial[kind] += 1
        if Shanten.calculate_shanten(trial, use_chiitoitsu=True, use_kokushi=False) == Shanten.AGARI_STATE:
            waits.append(kind)
    return tuple(waits)


def decomposer_waits(counts: list[int]) -> tuple[int, ...]:
    """Second independent check: our own meld decomposer (:func:`arrangements`) on all 34 kinds."""
    waits = []
    for kind in range(34):
        if counts[kind] == COPIES:
            continue
        trial = list(counts)
        trial[kind] += 1
        if arrangements(trial):
            waits.append(kind)
    return tuple(waits)


def _draw(rng: random.Random, tiles: list[int]) -> list[int]:
    counts = [0] * 34
    for tile in rng.sample(tiles, 13):
        counts[tile // 4] += 1
    return counts


def _six_pairs_and_a_single(rng: random.Random) -> list[int]:
    kinds = rng.sample(range(34), 7)
    counts = [0] * 34
    for kind in kinds[:6]:
        counts[kind] = 2
    counts[kinds[6]] = 1
    return counts


# --------------------------------------------------------------------------------------------------------
# Rules on hand-picked hands


@pytest.mark.parametrize(
    ("hand", "waits"),
    [
        ("123m456p789s1122z", ["1z", "2z"]),  # two pairs waiting to become a set (shanpon)
        ("1112345678999m", [f"{n}m" for n in range(1, 10)]),  # nine gates: every tile of the suit
        ("123m456p789s1234z", []),  # four different honours: no wait
        ("13m456p789s11122z", ["2m"]),  # closed wait between 1m and 3m (kanchan)
    ],
)
def test_known_hands(hand: str, waits: list[str]) -> None:
    assert waits_of(hand) == waits


def test_four_copies_in_hand_is_not_a_wait() -> None:
    # 7m would complete the hand (2234566777788m + 7m = 22m 345m 677m... see arrangements) but all four
    # 7m are already held, so the only wait is 2m.
    hand = parse_hand("2234566777788m")
    assert hand[TILES.index("7m")] == COPIES
    fifth = list(hand)
    fifth[TILES.index("7m")] += 1
    assert arrangements(fifth), "the rule must be what removes 7m, not the shape"
    assert waits_of("2234566777788m") == ["2m"]


def test_seven_pairs_count_and_need_distinct_pairs() -> None:
    assert waits_of("1122m3344p5566s7z") == ["7z"]  # only seven pairs completes it
    assert waits_of("1111m2233p4455s6z") == []  # four of a kind is not two pairs
    # A single that is both a seven-pairs and a standard wait is listed once.
    assert waits_of("112233m445566p7s") == ["7s"]


def test_thirteen_orphans_does_not_count() -> None:
    hand = parse_hand("19m19p19s1234567z")
    assert winning_tiles(hand) == ()
    tenpai_with_kokushi = Shanten.calculate_shanten(hand, use_chiitoitsu=True, use_kokushi=True)
    assert tenpai_with_kokushi == Shanten.TENPAI_STATE  # the package would count it: we exclude it on purpose


@pytest.mark.parametrize(
    ("notation", "message"),
    [
        ("123m456p789s1122", "not one-line tile notation"),
        ("0m23m456p789s1122z", "not one-line tile notation"),
        ("123m456p789s1188z", "not one-line tile notation"),
        ("11111m456p789s11z", "more than 4 copies of 1m"),
        ("123m456p789s11z", "has 11 tiles, expected 13"),
        ("123m 456p", "not one-line tile notation"),
    ],
)
def test_parse_hand_rejects_bad_notation(notation: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hand(notation)


def test_notation_round_trip_is_the_packages() -> None:
    assert format_hand(parse_hand("1122z789s456p123m")) == "123m456p789s1122z"


# --------------------------------------------------------------------------------------------------------
# Verifier vs brute force


def test_verifier_agrees_with_brute_force_on_random_hands() -> None:
    """1,000 generated tenpai hands plus 1,500 random ones (dense one-suit draws, six pairs and a single,
    uniform draws from the wall): the verifier (candidate pruning + ``Agari``), the package's ``Shanten``
    on all 34 kinds and our own decomposer on all 34 kinds give the same waits on every hand."""
    rng = random.Random(2024)
    hands = [parse_hand(ex.problem["hand"]) for ex in generate_examples(1000, 11, "train").examples]
    hands += [_draw(rng, list(range(36))) for _ in range(500)]  # one suit: many waits, karaten, 7 pairs
    hands += [_six_pairs_and_a_single(rng) for _ in range(500)]
    hands += [_draw(rng, list(range(136))) for _ in range(500)]  # mostly not tenpai: no false waits
    disagreements = [
        format_hand(h) for h in hands if not (winning_tiles(h) == brute_force_waits(h) == decomposer_waits(h))
    ]
    assert disagreements == []
    tenpai = sum(bool(winning_tiles(h)) for h in hands)
    assert tenpai > 1700  # the sample really exercises waits, not just empty sets


def test_verifier_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="expected 13 tiles"):
        winning_tiles([1] * 14 + [0] * 20)
    with pytest.raises(ValueError, match="expected 34 tile counts"):
        winning_tiles([1] * 13)


# --------------------------------------------------------------------------------------------------------
# Reverse synthesis


def test_generates_10000_stratified_unique_examples_in_under_30_s() -> None:
    start = time.perf_counter()
    report = generate_examples(10_000, 0, "train")
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"10,000 examples took {elapsed:.1f} s"
    examples = report.examples
    assert len(examples) == 10_000
    assert len({ex.problem["hand"] for ex in examples}) == 10_000  # no duplicate hand
    per_stratum = collections.Counter(ex.meta["stratum"] for ex in examples)
    assert per_stratum == {s.label(): 1250 for s in STRATA}
    for ex in examples[:2000]:
        hand = parse_hand(ex.problem["hand"])
        assert ex.answer == tuple(TILES[k] for k in winning_tiles(hand))
        assert ex.meta["n_waits"] == len(ex.answer) >= 1
        assert ex.meta["honours"] == any(hand[27:])
        assert split_of(hand) == "train"


def test_generation_is_deterministic_in_the_seed() -> None:
    first = [ex.problem["hand"] for ex in generate_examples(200, 5, "train").examples]
    again = [ex.problem["hand"] for ex in generate_examples(200, 5, "train").examples]
    other = [ex.problem["hand"] for ex in generate_examples(200, 6, "train").examples]
    assert first == again
    assert first != other


def test_small_n_fills_strata_in_order() -> None:
    report = generate_examples(11, 0, "eval")
    counts = collections.Counter(ex.meta["stratum"] for ex in report.examples)
    assert sum(counts.values()) == 11 and max(counts.values()) == 2 and len(counts) == 8


def test_generator_raises_when_it_cannot_fill_the_strata() -> None:
    with pytest.raises(TaskError, match="strata still short after 50 proposals"):
        generate_examples(500, 0, "train", max_proposals=50)
    with pytest.raises(ValueError, match="n must be >= 1"):
        generate_examples(0, 0, "train")


def _relabel(counts: list[int], suit_order: tuple[int, int, int], mirror: tuple[bool, bool, bool]) -> list[int]:
    out = [0] * 34
    for new, old in enumerate(suit_order):
        block = counts[old * 9 : old * 9 + 9]
        out[new * 9 : new * 9 + 9] = block[::-1] if mirror[new] else block
    honours = counts[27:]
    out[27:] = honours[3:] + honours[:3]
    return out


def test_structural_twins_share_a_key_and_a_side() -> None:
    rng = random.Random(7)
    for ex in generate_examples(300, 1, "train").examples:
        hand = parse_hand(ex.problem["hand"])
        order = tuple(rng.sample(range(3), 3))
        mirror = (rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5)
        twin = _relabel(hand, order, mirror)  # type: ignore[arg-type]
        assert structural_key(twin) == structural_key(hand)
        assert split_of(twin) == split_of(hand) == "train"
        assert len(winning_tiles(twin)) == len(winning_tiles(hand))


def test_no_structure_on_both_sides_of_the_split_whatever_the_seeds() -> None:
    train = generate_examples(3000, 0, "train").examples
    evaluation = generate_examples(600, 99, "eval").examples
    train_keys = {structural_key(parse_hand(ex.problem["hand"])) for ex in train}
    eval_keys = {structural_key(parse_hand(ex.problem["hand"])) for ex in evaluation}
    assert train_keys.isdisjoint(eval_keys)
    # The hash gives eval roughly its share of structures.
    rng = random.Random(3)
    sides = collections.Counter(split_of(_draw(rng, list(range(136)))) for _ in range(4000))
    assert abs(sides["eval"] / 4000 - EVAL_SHARE) < 0.03


# --------------------------------------------------------------------------------------------------------
# Traces and verification


def test_trace_is_one_arrangement_per_wait() -> None:
    ex = example_for_hand("123m456p789s1122z")
    assert ex.reasoning == "1z: 123m 456p 789s 111z 22z\n2z: 123m 456p 789s 11z 222z"
    assert ex.answer == ("1z", "2z")
    task = MahjongTask()
    assert task.target(ex).splitlines()[-1] == "Answer: 1z 2z"
    assert example_for_hand("1122m3344p5566s7z").reasoning == "7z: 11m 22m 33p 44p 55s 66s 77z"


def test_candidates_trace_marks_every_other_candidate_no() -> None:
    ex = example_for_hand("123m456p789s1122z", trace="candidates")
    lines = ex.reasoning.splitlines()
    assert "1z: 123m 456p 789s 111z 22z" in lines and "4m: no" in lines and "3z: no" not in lines
    assert MahjongTask(trace="candidates").verify(ex, ex.answer, ex.reasoning).ok


def test_complexity_counts_arrangements() -> None:
    # 111222333m is three sets or three runs: two arrangements for the one wait 7z.
    assert waits_of("111222333m456p7z") == ["7z"]
    assert hand_complexity(parse_hand("111222333m456p7z")) == 2
    task = MahjongTask()
    assert task.complexity(example_for_hand("111222333m456p7z")) == 2.0
    assert task.complexity(example_for_hand("123m456p789s1122z")) == 2.0
    assert task.complexity(example_for_hand("123m456p789s1234z")) == 0.0


def test_generated_traces_verify_and_corruptions_do_not() -> None:
    task = MahjongTask()
    for ex in task.examples("train", 200, 3):
        verdict = task.verify(ex, ex.answer, task.target(ex))
        assert verdict.ok and verdict.reasoning_checked, (ex.problem, verdict.reasons)
    ex = example_for_hand("123m456p789s1122z")
    cases = {
        "wrong group": ("1z: 123m 456p 789s 11z 22z\n2z: 123m 456p 789s 11z 222z", "not the hand plus 1z"),
        "not a meld": ("1z: 124m 456p 789s 111z 22z\n2z: 123m 456p 789s 11z 222z", "neither a set, a run"),
        "honour run": ("1z: 123m 456p 789s 123z 12z\n2z: 123m 456p 789s 11z 222z", "neither a set, a run"),
        "missed wait": ("1z: 123m 456p 789s 111z 22z\n2z: no", "2z is a winning tile"),
        "claims less": ("1z: 123m 456p 789s 111z 22z", "the trace shows 1z, the answer says 1z 2z"),
    }
    for name, (reasoning, reason) in cases.items():
        verdict = task.verify(ex, ex.answer, reasoning)
        assert not verdict.ok, name
        assert any(reason in r for r in verdict.reasons), (name, verdict.reasons)
    wrong = task.verify(ex, ("1z",))
    assert not wrong.ok and "is not the winning tiles 1z 2z" in wrong.reasons[0] and not wrong.reasoning_checked
    assert task.verify(ex, "Answer: 2z, 1z").ok  # text answers are parsed
    assert not task.verify(ex, ex.answer, task.target(ex).replace("Answer: 1z 2z", "Answer: 1z")).ok
    karaten = example_for_hand("2234566777788m")
    claim = task.verify(karaten, ("2m", "7m"), "2m: 22m 234m 567m 678m 778m\n7m: 22m 345m 666m 777m 778m")
    assert not claim.ok


# --------------------------------------------------------------------------------------------------------
# Scorer and extraction


@pytest.mark.parametrize(
    ("completion", "predicted"),
    [
        ("Answer: 1z 2z", ("1z", "2z")),
        ("Answer: 2z 1z", ("1z", "2z")),  # any order
        ("Answer: 1z, 2z, 1z", ("1z", "2z")),  # duplicates
        ("Answer: 12z", ("1z", "2z")),  # one-line notation
        ('Answer: ["2z", "1z"]', ("1z", "2z")),
        ("**Answer:** 1Z and 2 z.", ("1z", "2z")),
        ("1z: 123m 456p 789s 111z 22z\n2z: 123m 456p 789s 11z 222z\nAnswer: 1z 2z", ("1z", "2z")),
        ("I think the winning tiles are 1z and 2z!", ("1z", "2z")),  # no answer line: last line with tiles
        ("1z: 123m 456p 789s 111z 22z", None),  # only a trace line: no answer
        ("Wait 5 minutes, the answer is 1z", ("1z",)),  # "5 minutes" is not a tile
        ("Answer: none", ()),
        ("Answer: 1z 8z 0m", ("1z", "0m", "8z")),  # junk tiles are kept, so they cost precision
        ("no idea", None),
    ],
)
def test_extract_answer(completion: str, predicted: tuple[str, ...] | None) -> None:
    assert MahjongTask().extract_answer(completion) == predicted


def test_score_exact_set_and_f1() -> None:
    task = MahjongTask()
    ex = example_for_hand("123m456p789s1122z")
    assert task.score(ex, "Answer: 2z 1z 1z").correct
    half = task.score(ex, "Answer: 1z")
    assert not half.correct and half.credit == pytest.approx(2 / 3)
    extra = task.score(ex, "Answer: 1z 2z 3z")
    assert not extra.correct and extra.credit == pytest.approx(0.8)
    assert task.score(ex, "blah").credit == 0.0 and task.score(ex, "blah").predicted is None
    noten = example_for_hand("123m456p789s1234z")
    assert task.score(noten, "Answer: none").correct and task.target(noten) == "Answer: none"


def test_parse_tiles_orders_by_tile() -> None:
    assert parse_tiles("7z 1s 9m 1m 5p") == ("1m", "9m", "5p", "1s", "7z")


# --------------------------------------------------------------------------------------------------------
# Prompts


def test_prompt_styles_and_few_shot() -> None:
    compact, full = MahjongTask(), MahjongTask(prompt_style="full")
    ex = example_for_hand("123m456p789s1122z")
    assert compact.prompt(ex) == [{"role": "user", "content": "Mahjong winning tiles of 123m456p789s1122z?"}]
    messages = full.prompt(ex)
    assert messages[0]["role"] == "system" and "seven distinct pairs" in messages[0]["content"]
    shots = compact.examples("train", 3, 0)
    with_shots = compact.prompt(ex, shots)
    assert [m["role"] for m in with_shots] == ["user", "assistant"] * 3 + ["user"]
    assert with_shots[1]["content"] == compact.target(shots[0])
    with pytest.raises(ValueError, match="is the example being asked"):
        compact.prompt(shots[0], shots)


def test_target_is_compact() -> None:
    # SmolLM2's tokenizer spends one token per digit, suit letter, space and punctuation mark, so characters
    # bound tokens: a 2-wait target of the `waits` trace must stay well under 100 of them.
    task = MahjongTask(trace="waits")
    examples = task.examples("eval", 400, 0)
    two_waits = [ex for ex in examples if ex.meta["n_waits"] == 2]
    assert max(len(task.target(ex)) for ex in two_waits) < 70
    assert all(len(line) <= 36 for ex in examples for line in ex.reasoning.splitlines())


def test_registry_builds_mahjong_and_rejects_bad_options() -> None:
    task = get_task("mahjong-winning-tiles", trace="candidates")
    assert isinstance(task, MahjongTask) and task.trace == "candidates"
    with pytest.raises(TaskError, match="prompt_style must be"):
        get_task("mahjong-winning-tiles", prompt_style="long")
    with pytest.raises(TaskError, match="unexpected keyword argument 'data_dir'"):
        get_task("mahjong-winning-tiles", data_dir="x")


def test_example_record_shape() -> None:
    from stratos_train.tasks import example_record

    task = MahjongTask()
    ex: Example = example_for_hand("123m456p789s1122z")
    record = example_record(task, ex, "eval")
    assert record["problem"] == {"hand": "123m456p789s1122z"}
    assert record["answer"] == ["1z", "2z"]
    assert record["prompt"][-1]["content"].endswith("123m456p789s1122z?")
    assert record["target"].endswith("Answer: 1z 2z") and record["complexity"] == 2.0
