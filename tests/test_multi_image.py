"""Several images per prompt: LMM-R1 message rows with a list of images load, encode (each image's tokens whole),
train (padded and packed) and evaluate (BLINK's rows hold up to four); a row whose text holds image placeholders its
images do not fill is skipped and counted, the warning naming its file and line, never a crash inside the model; a
row too long is skipped whole, never cut."""

import json
import shutil

import pytest
import torch

from data import load_dataset_by_name, load_fixture
from rl.batch import ImageTokenMismatch, encode_prompts
from rl.config import preset
from rl.run import make_trainer
from tests.test_trainer import LengthReward

FIXTURE_IMAGES = load_fixture("message")[0].images[0]


def _rows(tmp_path, texts, images_per_row=2) -> str:
    """A message jsonl (the LMM-R1 format) beside its images; one row per text."""
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        shutil.copy(FIXTURE_IMAGES, tmp_path / "images" / name)
    path = tmp_path / "rows.jsonl"
    with open(path, "w") as f:
        for i, text in enumerate(texts):
            content = [{"type": "image", "image": f"file://images/{'ab'[k % 2]}.png"} for k in range(images_per_row)]
            message = [{"role": "user", "content": content + [{"type": "text", "text": text}]}]
            f.write(json.dumps({"id": i, "message": json.dumps(message), "answer": "3", "domain": "math"}) + "\n")
    return str(path)


@pytest.mark.slow
def test_two_image_rows_train_padded_and_packed(tmp_path, tiny_checkpoint):
    path = _rows(tmp_path, [f"Compare the two pictures: how many sides in all, {i}?" for i in range(4)])
    samples = load_dataset_by_name(path)
    assert [len(s.images) for s in samples] == [2] * 4
    for packed in (0, 2048):
        out = tmp_path / f"run{packed}"
        cfg = preset("debug", model=tiny_checkpoint, data=path, out=str(out), max_steps=1, prompts_per_step=2,
                     n_samples=2, max_new_tokens=4, train_batch_size=4, micro_batch_size=4, save_every=0,
                     max_tokens_per_micro=packed, warmup_ratio=0.0, kl=0.01)
        trainer = make_trainer(cfg, samples, LengthReward())
        row = encode_prompts(trainer.processor, samples[:1])[0]
        image_token = trainer.processor.tokenizer.convert_tokens_to_ids(trainer.processor.image_token)
        grid = row["image_grid_thw"]
        assert grid.shape[0] == 2  # one grid per image, every patch's token in the prompt
        assert int((row["prompt_ids"] == image_token).sum()) == int(grid.prod(-1).sum()) // 4
        trainer.train()
        metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        assert metrics["grad_norm"] > 0 and not any(k.startswith("data/") and v for k, v in metrics.items())


def test_placeholders_the_images_do_not_fill_are_skipped_and_counted_naming_the_row(tmp_path, tiny_checkpoint,
                                                                                     capsys):
    texts = ["How many sides?", "Which one <|image_pad|> has more sides?", "How many corners?", "And edges?"]
    path = _rows(tmp_path, texts, images_per_row=1)
    samples = load_dataset_by_name(path)
    cfg = preset("debug", model=tiny_checkpoint, data=path, out=str(tmp_path / "run"), max_steps=2,
                 episodes=2, prompts_per_step=4, n_samples=2, max_new_tokens=4, train_batch_size=8, micro_batch_size=4,
                 save_every=0)
    trainer = make_trainer(cfg, samples, LengthReward())
    with pytest.raises(ImageTokenMismatch, match=r"rows.jsonl:2: 1 image\(s\), but its text does not match them"):
        encode_prompts(trainer.processor, [samples[1]])
    trainer.log = print
    trainer.train()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["data/image_token_mismatch"] for m in lines] == [1, 2]  # drawn each step, encoded once
    warnings = [x for x in capsys.readouterr().out.splitlines() if "image(s), but its text" in x]
    assert len(warnings) == 1 and "rows.jsonl:2" in warnings[0]


def test_a_two_image_row_too_long_is_skipped_whole(tmp_path, tiny_checkpoint):
    path = _rows(tmp_path, ["Short?", "A question " * 40 + "?", "Short too?", "Also short?"])
    samples = load_dataset_by_name(path)
    cfg = preset("debug", model=tiny_checkpoint, data=path, out=str(tmp_path / "run"), max_steps=1,
                 prompts_per_step=4, n_samples=2, max_new_tokens=4, train_batch_size=8, micro_batch_size=4,
                 save_every=0)
    trainer = make_trainer(cfg, samples, LengthReward())
    lengths = [encode_prompts(trainer.processor, [s])[0]["prompt_ids"].numel() for s in samples]
    trainer.cfg.max_prompt_len = max(n for i, n in enumerate(lengths) if i != 1)  # only row 2 is too long
    prompts, kept = trainer.encode(samples)
    assert len(prompts) == 3 and samples[1] not in kept and trainer.counts["data/prompt_too_long"] == 1
    assert all(torch.equal(p["prompt_ids"], encode_prompts(trainer.processor, [s])[0]["prompt_ids"])
               for p, s in zip(prompts, kept))  # the others whole, never cut


def test_check_data_reports_vision_tokens_in_a_rows_text(tmp_path):
    """--check-data finds them before any model loads, naming the row."""
    from data.check import check_samples, format_report

    path = _rows(tmp_path, ["How many sides?", "Which one <|image_pad|> has more sides?"], images_per_row=1)
    report = check_samples(load_dataset_by_name(path))
    assert report["problems"] == {"vision_tokens_in_text": 1} and report["bad_rows"] == 1
    assert "rows.jsonl:2: 'Which one <|image_pad|>" in format_report(report)
