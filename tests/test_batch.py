"""rl/batch.py: one step's data in one Rollout - per-token tensors written by index, micro-batches sliced by index."""

import torch

from rl import losses
from rl.batch import Rollout, collate


def _rollout():
    prompts = [{"prompt_ids": torch.tensor([5, 6, 7])}, {"prompt_ids": torch.tensor([8])}]
    responses = [torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4, 4, 4, 4]), torch.tensor([], dtype=torch.long)]
    return Rollout(prompts, 2, responses, [True, False, True, False])


def test_rollout_preallocates_and_maps_samples_to_prompts():
    r = _rollout()
    assert len(r) == 4 and r.old_logp.shape == (4, 4) and r.advantages.dtype == torch.float32
    assert r.mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert [row["prompt_ids"].tolist() for row in r.rows([0, 1, 2, 3])] == [[5, 6, 7], [5, 6, 7], [8], [8]]


def test_store_writes_by_index_and_zeroes_padding():
    r = _rollout()
    r.store([1, 0], "old_logp", torch.tensor([[-1.0, float("nan")], [-2.0, -3.0]]))  # NaN sits on padding
    assert r.old_logp[:2].tolist() == [[-2.0, -3.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]
    assert (r.old_logp[2:] == 0).all()


def test_batch_is_the_collated_rows_with_sliced_token_tensors():
    r = _rollout()
    r.advantages = torch.arange(16.0).reshape(4, 4)
    b = r.batch([2, 0], pad_id=0)
    ref = collate(r.rows([2, 0]), pad_id=0)
    assert torch.equal(b["input_ids"], ref["input_ids"]) and b["prompt_len"] == 3
    assert b["input_ids"].tolist() == [[0, 0, 8, 4, 4, 4, 4], [5, 6, 7, 1, 2, 0, 0]]  # prompts left, responses right
    assert b["action_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert b["advantages"].tolist() == [[8.0, 9.0, 10.0, 11.0], [0.0, 1.0, 2.0, 3.0]]
    narrow = r.batch([0, 1], pad_id=0)  # width = its own longest response
    assert narrow["advantages"].shape == (2, 2) and narrow["advantages"].tolist() == [[0.0, 1.0], [4.0, 5.0]]


def test_micro_batch_weights_reassemble_the_train_batch_loss():
    """The trainer weighs each micro-batch's loss by its count over the train batch's: the sum is the loss of the
    whole batch, for every aggregation (bnpo's whole is by definition the mean of its micro-batches' token means)."""
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    per_token = torch.randn(5, 4)
    parts = [[0, 2], [1, 3], [4]]
    for agg in losses.AGGREGATIONS:
        counts = [losses.aggregate_count(mask[p], agg) for p in parts]
        total = sum(c / sum(counts) * losses.aggregate(per_token[p], mask[p], agg, max_len=7)
                    for c, p in zip(counts, parts))
        whole = sum(losses.aggregate(per_token[p], mask[p], "token-mean") for p in parts) / 3 if agg == "bnpo" \
            else losses.aggregate(per_token, mask, agg, max_len=7)
        torch.testing.assert_close(total, whole)
    assert [losses.aggregate_count(mask[[0, 2]], agg) for agg in losses.AGGREGATIONS] == [1, 3, 2, 1, 2, 3]


def test_groups_and_join_keep_every_samples_data():
    r = _rollout()
    r.sampler_logp = torch.arange(16.0).reshape(4, 4) * r.mask
    r.trainable = torch.tensor([True, False, True, True])
    second = r.groups([1])  # prompt 1 alone: samples 2 and 3, width 4 (its longest response)
    assert len(second) == 2 and second.prompts == [r.prompts[1]] and second.finished == [True, False]
    assert second.sampler_logp.tolist() == [[8.0, 9.0, 10.0, 11.0], [0.0] * 4] and second.trainable.tolist() == [1, 1]
    first = r.groups([0])
    assert first.mask.shape == (2, 2) and first.sampler_logp.tolist() == [[0.0, 1.0], [4.0, 0.0]]
    both = Rollout.join([second, first])  # widths 4 and 2 in one rollout of width 4, in order
    assert [row["prompt_ids"].tolist() for row in both.rows(range(4))] == [[8], [8], [5, 6, 7], [5, 6, 7]]
    assert both.sampler_logp.tolist() == [[8.0, 9.0, 10.0, 11.0], [0.0] * 4, [0.0, 1.0, 0.0, 0.0],
                                          [4.0, 0.0, 0.0, 0.0]]
    assert both.trainable.tolist() == [True, True, True, False] and both.finished == [True, False, True, False]
    assert len(r.groups([])) == 0
    b = both.batch([2, 3], pad_id=0)  # the loss mask: the action mask of trainable samples only
    assert b["action_mask"].tolist() == [[True, True], [True, False]]
    assert b["loss_mask"].tolist() == [[True, True], [False, False]]
