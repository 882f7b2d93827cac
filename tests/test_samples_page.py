"""samples.html (rl/samples_page.py): a static page that parses as HTML, shows every image inline (no network),
and shows model text as text (escaped: a response holding markup or a script cannot change the page)."""

from html.parser import HTMLParser

from PIL import Image

from rl.samples_page import samples_page, write_samples_page


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.open = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"


def test_page_parses_with_images_inline_and_model_text_escaped(tmp_path):
    picture = tmp_path / "p.png"
    Image.new("RGB", (640, 320), "red").save(picture)
    hostile = "<script>alert(1)</script></pre><img src=http://example.com/x.png> & more"
    path = write_samples_page(tmp_path / "samples.html", "run <x>", [
        {"heading": "Step 1", "items": [
            {"prompt": "How many? <b>", "images": [picture, Image.new("RGB", (10, 10)), tmp_path / "missing.png"],
             "gold": "3", "responses": [{"text": hostile, "scores": {"accuracy": 1.0, "format": 0.0}},
                                        {"text": "x" * 10_000, "scores": {"correct": False}}]}]},
        {"heading": "Step 2", "items": []}])
    page = path.read_text(encoding="utf-8")
    parser = Tags()
    parser.feed(page)
    assert not parser.open and parser.tags.count("h2") == 2 and "script" not in parser.tags
    assert len(parser.srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in parser.srcs)
    assert "image 3 cannot be read" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://example.com" not in "".join(parser.srcs) and "run &lt;x&gt;" in page
    assert "<b>accuracy</b> 1" in page and "<b>correct</b> no" in page
    assert "... " + "x" * 4000 in page and "x" * 4001 not in page  # a long response: its tail, where the answer is


def test_an_empty_page_is_still_a_page():
    parser = Tags()
    parser.feed(samples_page("nothing", []))
    assert parser.tags[:2] == ["html", "head"] and not parser.open


def test_a_training_run_writes_its_samples_page(tmp_path):
    """After the first, middle and last steps: the first prompts of the data set (with their images), two sampled
    responses each and every reward component; a recording does not move the training's random streams."""
    import json

    from data import load_fixture
    from rl.config import preset
    from rl.monitor import SAMPLE_PROMPTS, SAMPLE_RESPONSES
    from rl.run import make_trainer
    from tests.test_trainer import LengthReward

    cfg = preset("debug", out=str(tmp_path), max_steps=4, episodes=4, prompts_per_step=2, n_samples=2,
                 max_new_tokens=4, train_batch_size=4, micro_batch_size=4, save_every=0, plots=False)
    trainer = make_trainer(cfg, load_fixture("message"), LengthReward())
    trainer.train()
    lines = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 4]
    assert all(len(x["items"]) == SAMPLE_PROMPTS and all(len(i["responses"]) == SAMPLE_RESPONSES
                                                          and "total" in i["responses"][0]["scores"]
                                                          for i in x["items"]) for x in lines)
    parser = Tags()
    parser.feed((tmp_path / "samples.html").read_text())
    assert parser.tags.count("h2") == 3 and len(parser.srcs) == 3 * SAMPLE_PROMPTS and not parser.open
