"""Data that must not reach a training step: bad images, paths outside the data folder, image URLs, JSON nested too
deep, rows too large. Each is a one-line row error naming the file and line (or row) under on_error="raise", a counted
skip under "skip", and a `row_<reason>` line of the --check-data report (offline, in-process, real files)."""

import base64
import http.server
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

import data.images as dimg
import data.io as dio
from data import load_dataset_by_name
from data.check import check_samples, format_report, skipped_rows
from data.images import allowing_urls, data_limits, image_roots, load_image
from data.io import DataError, row_limit
from data.loaders import load_deepscaler, load_jsonl, load_message_jsonl
from data.vermulti import load_vermulti

ROOT = Path(__file__).resolve().parents[1]
DEEP = 100_000  # levels of [ ... ]: Python's parser gives up at about 1,000


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def png(path, size=(8, 6), noise=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.effect_noise(size, 60).convert("RGB") if noise else Image.new("RGB", size, "red")).save(path)
    return path


def huge_header_png(path, width, height):
    """A small PNG whose header says width x height (the pixels are never there: nothing is allocated here)."""
    png(path)
    raw = bytearray(path.read_bytes())
    raw[16:24] = struct.pack(">II", width, height)  # IHDR data starts at byte 16: width, height, ...
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))  # the chunk's CRC over its type and data
    path.write_bytes(bytes(raw))
    return path


def bad_images(folder):
    """{name: (file, reason)} of the images a step could not use."""
    truncated = png(folder / "truncated.png", (200, 150), noise=True)
    truncated.write_bytes(truncated.read_bytes()[:4000])
    text = folder / "text.png"
    text.write_text("not an image, whatever the name says")
    return {"truncated": (truncated, "bad_image"), "text": (text, "bad_image"),
            "400mp": (huge_header_png(folder / "400mp.png", 20000, 20000), "image_too_large"),
            "144mp": (huge_header_png(folder / "144mp.png", 12000, 12000), "image_too_large")}


def assert_raises_then_skips(load, path, where, reason, *, report_reason=None):
    """`load(on_error=...)`: a one-line DataError starting with `where` under raise; one counted skip under skip."""
    with pytest.raises(DataError) as e:
        load(on_error="raise")
    msg = str(e.value)
    assert msg.startswith(f"{where}: ") and "\n" not in msg and e.value.reason == reason, msg
    report = Counter()
    samples = load(on_error="skip", report=report)
    assert report[f"skipped/{report_reason or reason}"] == 1, report
    return msg, samples


# --------------------------------------------------------------------------- images are checked at load


def test_bad_images_are_row_errors_at_load(tmp_path):
    images = bad_images(tmp_path / "imgs")
    png(tmp_path / "imgs" / "ok.png")
    for name, (image, reason) in images.items():
        p = write_lines(tmp_path / f"{name}.jsonl", [{"question": "q", "answer": "1", "images": ["imgs/ok.png"]},
                                                    {"question": "q", "answer": "2", "images": [f"imgs/{image.name}"]}])
        msg, kept = assert_raises_then_skips(lambda **kw: load_jsonl(p, **kw), p, f"{p}:2", reason)
        assert f"imgs/{image.name}" in msg and [s.answer for s in kept] == ["1"]
        if reason == "image_too_large":  # read from the header: never decoded
            assert "over --max-image-pixels 32,112,640 (not decoded)" in msg
            assert ("400,000,000" if name == "400mp" else "144,000,000") in msg
    # the LMM-R1 message rows: the same check
    p = write_lines(tmp_path / "mm.jsonl", [
        {"message": json.dumps([{"role": "user", "content": [{"type": "image", "image": "file://imgs/text.png"},
                                                             {"type": "text", "text": "q"}]}]), "answer": "1"}])
    assert_raises_then_skips(lambda **kw: load_message_jsonl(p, **kw), p, f"{p}:1", "bad_image")


def test_image_limit_is_the_flag_and_holds_when_a_step_draws(tmp_path):
    from rl.config import parse_config

    assert dimg.default_max_image_pixels(640 * 28 * 28) == 64 * 640 * 28 * 28 == dimg.DEFAULT_MAX_IMAGE_PIXELS
    assert dimg.default_max_image_pixels(112 * 112) == 4096 * 4096  # small presets: never below 4096 x 4096
    assert parse_config(["--preset", "debug"]).max_image_pixels == 0
    image = png(tmp_path / "imgs" / "a.png", (40, 30))
    p = write_lines(tmp_path / "d.jsonl", [{"question": "q", "answer": "1", "images": ["imgs/a.png"]}])
    assert len(load_jsonl(p)) == 1
    with data_limits(max_image_pixels=1000):  # 40 x 30 = 1,200 pixels
        assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's bomb guard at the same limit
        with pytest.raises(DataError, match=r"d\.jsonl:1: image imgs/a\.png: 40 x 30 = 1,200 pixels, over "
                                            r"--max-image-pixels 1,000 \(not decoded\)"):
            load_jsonl(p)
        with pytest.raises(DataError, match="1,200 pixels, over --max-image-pixels 1,000") as e:
            load_image(str(image))  # what a step calls: refused, not decoded
        assert e.value.reason == "image_too_large"
    assert Image.MAX_IMAGE_PIXELS == dimg.max_image_pixels() == dimg.DEFAULT_MAX_IMAGE_PIXELS  # restored
    assert load_image(str(image)).size == (40, 30)
    with pytest.raises(DataError, match="400,000,000 pixels, over --max-image-pixels"):
        load_image(str(huge_header_png(tmp_path / "big.png", 20000, 20000)))


def test_each_image_is_decoded_once(tmp_path, monkeypatch):
    png(tmp_path / "imgs" / "a.png")
    p = write_lines(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": "1", "images": ["imgs/a.png"]}
                                           for i in range(50)])
    opened = []
    real = dimg._open_rgb
    monkeypatch.setattr(dimg, "_open_rgb", lambda fp, *a, **kw: opened.append(fp) or real(fp, *a, **kw))
    dimg._probe.cache_clear()
    assert len(load_jsonl(p)) == 50 and len(load_jsonl(p)) == 50
    assert len(opened) == 1


# --------------------------------------------------------------------------- image paths stay in the data folder


def test_image_paths_resolve_inside_the_data_folder(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    png(data / "imgs" / "ok.png")
    secret = png(outside / "secret.png")
    (data / "imgs" / "link.png").symlink_to(secret)  # a link inside that leads outside
    (data / "imgs" / "inner.png").symlink_to(data / "imgs" / "ok.png")  # a link that stays inside: fine
    escapes = ["../elsewhere/secret.png", str(secret), f"file://{secret}", "imgs/link.png",
               "imgs/../../elsewhere/secret.png"]
    rows = [{"question": "q", "answer": "1", "images": ["imgs/ok.png", "imgs/inner.png"]}]
    p = write_lines(data / "d.jsonl", rows + [{"question": "q", "answer": "2", "images": [r]} for r in escapes])
    with pytest.raises(DataError) as e:
        load_jsonl(p)
    assert str(e.value) == (f"{p}:2: image ../elsewhere/secret.png is {secret.resolve()}, outside the data folder "
                            f"{data.resolve()}: pass --image-root DIR to allow images under DIR")
    assert e.value.reason == "image_outside_data"
    report = Counter()
    assert len(load_jsonl(p, on_error="skip", report=report)) == 1
    assert report == Counter({"loaded": 1, "skipped/image_outside_data": len(escapes)})
    with image_roots(outside):  # --image-root: images may lie there too
        assert [s.images for s in load_jsonl(p)][1:] == [[str(secret.resolve())]] * len(escapes)
    # a relative path is also looked up under --image-root
    p2 = write_lines(data / "rel.jsonl", [{"question": "q", "answer": "1", "images": ["secret.png"]}])
    with pytest.raises(DataError, match="image not found: secret.png"):
        load_jsonl(p2)
    with image_roots(outside):
        assert load_jsonl(p2)[0].images == [str(secret.resolve())]
    with pytest.raises(ValueError, match="--image-root .*: not a directory"):
        with image_roots(tmp_path / "nope"):
            pass


def test_vermulti_rebased_images_stay_allowed_and_escapes_do_not(tmp_path):
    root = tmp_path / "VerMulti"
    png(root / "mathv_geo_img" / "a.png")
    png(tmp_path / "outside.png")

    def row(image):
        msg = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Find x."}]}]
        return {"message": json.dumps(msg), "answer": "5"}

    path = write_lines(root / "mathv_geo_message.jsonl", [row("data/mathv_geo/mathv_geo_img/a.png"),  # rebased
                                                           row("file://../outside.png")])
    with pytest.raises(DataError) as e:
        load_vermulti(root, subset="geo")
    assert str(e.value).startswith(f"{path}:2: image ") and e.value.reason == "image_outside_data"
    report = Counter()
    (s,) = load_vermulti(root, subset="geo", on_error="skip", report=report)
    assert Path(s.images[0]) == (root / "mathv_geo_img" / "a.png").resolve()
    assert report == Counter({"loaded": 1, "skipped/image_outside_data": 1})


# --------------------------------------------------------------------------- image URLs


class _Server(http.server.ThreadingHTTPServer):
    hits: Counter


@pytest.fixture
def image_server(tmp_path, monkeypatch):
    """A local HTTP server of /a.png and /text.png counting its requests; the URL cache in tmp_path; online."""
    buf = png(tmp_path / "served.png").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.server.hits[self.path] += 1
            body = buf if self.path == "/a.png" else b"<html>not an image</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.hits = Counter()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setattr(dimg, "DEFAULT_CACHE", tmp_path / "cache")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield server
    server.shutdown()
    server.server_close()


def test_image_urls_are_refused_unless_allowed_and_fetched_once(tmp_path, image_server, monkeypatch):
    url = f"http://127.0.0.1:{image_server.server_address[1]}"
    p = write_lines(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": "1", "images": [f"{url}/a.png"]}
                                           for i in range(3)] + [{"question": "q", "answer": "1",
                                                                  "images": [f"{url}/text.png"]}])
    with pytest.raises(DataError) as e:
        load_jsonl(p)
    assert str(e.value) == (f"{p}:1: image {url}/a.png is a URL: not fetched (pass --allow-urls to fetch each image "
                            f"URL once at load, or use local files)")
    assert e.value.reason == "image_url" and not image_server.hits
    report = Counter()
    assert load_jsonl(p, on_error="skip", report=report) == [] and report["skipped/image_url"] == 4
    with allowing_urls():
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: never fetched
        with pytest.raises(DataError, match=r"d\.jsonl:1: image http://\S+/a\.png cannot be fetched: offline"):
            load_jsonl(p)
        monkeypatch.delenv("HF_HUB_OFFLINE")
        with pytest.raises(DataError, match=r"d\.jsonl:4: image http://\S+/text\.png: not an image"):
            load_jsonl(p)  # fetched, then checked like a file
        samples = load_jsonl(p, on_error="skip")
        samples += load_jsonl(p, on_error="skip")
    assert image_server.hits == Counter({"/a.png": 1, "/text.png": 1})  # once each, whatever the rows and loads
    cached = samples[0].images[0]
    assert all(s.images == [cached] for s in samples) and Path(cached).parent == tmp_path / "cache" / "url_images"
    assert load_image(cached).size == (8, 6) and load_image(f"{url}/a.png").size == (8, 6)  # a draw: no fetch
    assert image_server.hits["/a.png"] == 1
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")  # an image URL a step reads offline: refused, not fetched
    with pytest.raises(ValueError, match="offline"):
        load_image(f"{url}/other.png")
    inline = "data:image/png;base64," + base64.b64encode((tmp_path / "served.png").read_bytes()).decode()
    p2 = write_lines(tmp_path / "inline.jsonl", [{"question": "q", "answer": "1", "images": [inline]}])
    with pytest.raises(DataError, match=r"inline\.jsonl:1: image data:image/png;base64,\S+ is a URL: not fetched"):
        load_jsonl(p2)
    with allowing_urls():  # a data: URL needs no network: read offline too
        assert load_image(load_jsonl(p2)[0].images[0]).size == (8, 6)


# --------------------------------------------------------------------------- JSON depth and row size


def test_json_nested_too_deep_is_a_row_error(tmp_path):
    deep = "[" * DEEP + "]" * DEEP
    good = {"problem": "q", "answer": "1"}
    bad = '{"problem": "q", "answer": "2", "x": ' + deep + "}"
    jsonl = write_lines(tmp_path / "deep.jsonl", [good, bad])
    listed = tmp_path / "deep.json"
    listed.write_text("[" + json.dumps(good) + ", " + bad + ", " + json.dumps(good) + "]")
    for path, where in ((jsonl, f"{jsonl}:2"), (listed, f"{listed}:row 2")):
        msg, kept = assert_raises_then_skips(lambda **kw: load_deepscaler(path, **kw), path, where, "too_deep")
        assert msg.endswith("row nested deeper than 64 levels of JSON (not parsed)")
        assert len(kept) == (1 if path is jsonl else 2)
    # a large document is streamed: the deep row is still one row's error, found where Python's parser gives up or
    # beyond the bound below that
    rows = [json.dumps({"problem": "w" * 200, "answer": str(i)}) for i in range(40)]
    shallow_but_over = '{"problem": "q", "answer": "3", "x": ' + "[" * 70 + "]" * 70 + "}"
    big = tmp_path / "big.json"
    big.write_text("[" + ", ".join(rows[:20] + [bad] + rows[20:] + [shallow_but_over]) + "]")
    assert big.stat().st_size > 200_000
    with row_limit(2 * DEEP + 1000):
        report = Counter()
        assert len(load_deepscaler(big, on_error="skip", report=report)) == 40
        assert report["skipped/too_deep"] == 2
        with pytest.raises(DataError, match=rf"big\.json:row 21: row nested deeper than 64 levels"):
            load_deepscaler(big)
    # the released shape nests 5 levels (the message string 4 more): read as before
    ok = write_lines(tmp_path / "ok.jsonl", [{"problem": "q", "answer": "1", "x": [[[[[[[[1]]]]]]]]}])
    assert len(load_deepscaler(ok)) == 1
    # the message string of an LMM-R1 row is JSON too
    msg_row = {"message": "[" * DEEP + "]" * DEEP, "answer": "1"}
    p = write_lines(tmp_path / "m.jsonl", [msg_row])
    with pytest.raises(DataError, match=r"m\.jsonl:1: `message` nested deeper than 64 levels of JSON") as e:
        load_dataset_by_name(p)
    assert e.value.reason == "too_deep"
    root = tmp_path / "VerMulti"  # VerMulti reads every row before the loader: it must not parse it either
    root.mkdir()
    write_lines(root / "mathv_geo_message.jsonl", [bad, msg_row])
    report = Counter()
    assert load_vermulti(root, subset="geo", on_error="skip", report=report) == []
    assert report["skipped/too_deep"] == 2


def test_rows_over_the_default_size_are_refused_unread(tmp_path):
    assert dio.DEFAULT_MAX_ROW_BYTES == 2**20
    p = write_lines(tmp_path / "d.jsonl", [{"problem": "q", "answer": "1"},
                                          {"problem": "x" * 2_000_000, "answer": "2"}])
    msg, kept = assert_raises_then_skips(lambda **kw: load_deepscaler(p, **kw), p, f"{p}:2", "row_too_large")
    assert msg == f"{p}:2: row larger than --max-row-bytes 1048576 bytes (not read)" and len(kept) == 1
    root = tmp_path / "VerMulti"  # nor does VerMulti's copy read it whole
    root.mkdir()
    (root / "mathv_geo_message.jsonl").write_bytes(p.read_bytes())
    with pytest.raises(DataError, match=r"mathv_geo_message\.jsonl:1: missing `message`"):
        load_vermulti(root, subset="geo")
    report = Counter()
    assert load_vermulti(root, subset="geo", on_error="skip", report=report) == []
    assert report == Counter({"skipped/bad_message": 1, "skipped/row_too_large": 1})


# --------------------------------------------------------------------------- what --check-data and the flags show


def test_check_data_reports_every_refused_row(tmp_path):
    images = bad_images(tmp_path / "data" / "imgs")
    png(tmp_path / "data" / "imgs" / "ok.png")
    png(tmp_path / "outside" / "x.png")
    rows = [{"question": "q", "answer": "1", "images": ["imgs/ok.png"]}]
    rows += [{"question": "q", "answer": "1", "images": [f"imgs/{image.name}"]} for image, _ in images.values()]
    rows += [{"question": "q", "answer": "1", "images": ["imgs/../../outside/x.png"]},
             {"question": "q", "answer": "1", "images": ["https://example.com/x.png"]},
             '{"question": "q", "answer": "1", "x": ' + "[" * DEEP + "]" * DEEP + "}",
             {"question": "x" * 2_000_000, "answer": "1"}]
    p = write_lines(tmp_path / "data" / "d.jsonl", rows)
    with skipped_rows() as skipped:
        samples = load_dataset_by_name(p, on_error="skip")
    text = format_report(check_samples(samples, skipped=skipped))
    assert "9 rows, 8 with problems" in text
    for kind, lines in {"row_bad_image": [2, 3], "row_image_too_large": [4, 5], "row_image_outside_data": [6],
                        "row_image_url": [7], "row_too_deep": [8], "row_row_too_large": [9]}.items():
        assert f"  {kind}: {len(lines)}\n" in text + "\n"
        for line in lines:
            assert f"{p}:{line}: " in text


def test_data_flags_reach_the_loader(tmp_path, capsys):
    from rl.config import parse_config
    from rl.run import check_data, load_samples

    data, outside = tmp_path / "data", tmp_path / "outside"
    png(data / "imgs" / "a.png", (40, 30))
    png(outside / "b.png")
    p = write_lines(data / "d.jsonl", [{"question": "q", "answer": "1", "images": ["imgs/a.png"]},
                                       {"question": "q", "answer": "2", "images": [str(outside / "b.png")]}])
    base = ["--preset", "debug", "--data", str(p)]
    previous = dimg.max_image_pixels()
    try:
        with pytest.raises(SystemExit, match=rf"^error: {p}:2: image \S+b\.png is \S+, outside the data folder"):
            load_samples(parse_config(base))
        assert len(load_samples(parse_config(base + ["--image-root", str(outside)]))) == 2
        assert dimg.max_image_pixels() == 4096 * 4096  # the debug preset's: 64 x 112 x 112 is below the floor
        with pytest.raises(SystemExit, match=r"^error: \S+d\.jsonl:1: image imgs/a\.png: 40 x 30 = 1,200 pixels, "
                                             r"over --max-image-pixels 1,000"):
            load_samples(parse_config(base + ["--max-image-pixels", "1000", "--image-root", str(outside)]))
        assert dimg.max_image_pixels() == 1000  # and so for every image a step draws
        with pytest.raises(SystemExit, match=r"^error: --max-image-pixels -1: must be at least 0"):
            load_samples(parse_config(base + ["--max-image-pixels", "-1"]))
        with pytest.raises(SystemExit, match=r"^error: --image-root \S+nope: not a directory"):
            load_samples(parse_config(base + ["--image-root", str(tmp_path / "nope")]))
        assert parse_config(base + ["--allow-urls"]).allow_urls and not parse_config(base).allow_urls
        with pytest.raises(SystemExit, match="50.00% of the rows have problems"):
            check_data(parse_config(base), max_bad=0.01)
        out = capsys.readouterr().out
        assert "row_image_outside_data: 1" in out and f"{p}:2: image" in out
    finally:
        dimg.set_max_image_pixels(previous)


@pytest.mark.slow
def test_check_data_as_the_user_sees_it(tmp_path):
    images = bad_images(tmp_path / "imgs")
    rows = [{"problem": "1+1?", "answer": "2"}]
    rows += [{"question": "q", "answer": "1", "images": [f"imgs/{image.name}"]} for image, _ in images.values()]
    rows.append('{"question": "q", "answer": "1", "x": ' + "[" * DEEP + "]" * DEEP + "}")
    data = write_lines(tmp_path / "d.jsonl", rows)
    proc = subprocess.run([sys.executable, str(ROOT / "train_fre.py"), "--data", str(data), "--model",
                           "nobody/not-loaded", "--check-data", "--out", str(tmp_path / "o")], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "6 rows, 5 with problems" in proc.stdout
    assert "row_bad_image: 2" in proc.stdout and f"{data}:2: image imgs/truncated.png: truncated" in proc.stdout
    assert f"{data}:3: image imgs/text.png: not an image" in proc.stdout
    assert "row_image_too_large: 2" in proc.stdout
    assert f"{data}:4: image imgs/400mp.png: 400,000,000 pixels" in proc.stdout
    assert "row_too_deep: 1" in proc.stdout and f"{data}:6: row nested deeper than 64 levels" in proc.stdout
