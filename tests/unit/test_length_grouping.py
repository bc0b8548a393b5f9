"""Length-grouped batches: the job's default sampler computes fewer padded tokens than random batches, visits
every row once per epoch, and is off when shuffling is off."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import SequentialSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from stratos_train.config import TrainConfig, parse_hyperparameters
from stratos_train.data import EncodedExample, ListDataset
from stratos_train.models import build_tiny_model, train_tiny_tokenizer
from stratos_train.trainer import DistillationTrainer
from tests.helpers.tiny_sft import tiny_args

BATCH = 8


def _rows(n: int = 400) -> ListDataset:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        length = rng.choice([40, 60, 90, 150, 250])  # like Mahjong targets: 1 wait to 4+ waits
        ids = [1] * length
        rows.append(EncodedExample(input_ids=ids, labels=ids, index=i))
    return ListDataset(rows)


def _trainer(tmp_path, strategy: str, shuffle: bool = True) -> DistillationTrainer:
    tok = train_tiny_tokenizer(["a b c d"], vocab_size=300)
    args = tiny_args(str(tmp_path), batch=BATCH, train_sampling_strategy=strategy)
    return DistillationTrainer(
        model=build_tiny_model(tok),
        args=args,
        train_dataset=_rows(),
        kd_config=TrainConfig().kd_loss_config(cross_entropy_only=True),
        shuffle=shuffle,
    )


def _padded_tokens(order: list[int], dataset: ListDataset) -> int:
    total = 0
    for start in range(0, len(order), BATCH):
        lengths = [len(dataset[i].input_ids) for i in order[start : start + BATCH]]
        total += max(lengths) * len(lengths)
    return total


def test_group_by_length_is_the_default():
    assert TrainConfig().group_by_length is True


def test_grouped_batches_pad_less_and_cover_every_row(tmp_path):
    grouped = _trainer(tmp_path, "group_by_length")
    sampler = grouped._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    torch.manual_seed(0)
    order = list(iter(sampler))
    assert sorted(order) == list(range(400))  # a permutation: each row once per epoch
    random_order = list(iter(_trainer(tmp_path, "random")._get_train_sampler()))
    data = grouped.train_dataset
    real = sum(len(row.input_ids) for row in data.examples)
    # Random batches of these lengths compute ~1.6x the real tokens; grouped ones nearly none extra.
    assert _padded_tokens(order, data) < 1.1 * real < _padded_tokens(random_order, data)


def test_no_shuffle_keeps_the_sequential_order(tmp_path):
    sampler = _trainer(tmp_path, "group_by_length", shuffle=False)._get_train_sampler()
    assert isinstance(sampler, SequentialSampler)


@pytest.mark.parametrize("value", ["true", "false"])
def test_group_by_length_hyperparameter_string(value):
    config = parse_hyperparameters({"group_by_length": value})
    assert config.group_by_length is (value == "true")
