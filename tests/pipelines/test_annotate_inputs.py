"""Listing and keying the input, and reading the subtitle CSV (no Ray)."""

from __future__ import annotations

import pytest

from pipelines.config import AnnotateConfig
from pipelines.inputs import build_listing, list_clips, read_subtitles, unsafe_id_reason

CFG = AnnotateConfig()


def touch(path, data: bytes = b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name", ["sample_00000001", "a.b-c_D", "0", "_x"])
def test_safe_ids(name):
    assert unsafe_id_reason(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "a..b",
        ".hidden",
        "-rf",
        "has space",
        "semi;colon",
        "a" * 129,
        "ümlaut",
        "new\nline",
        "back\\slash",
        "evil\n",  # a trailing newline: `$` alone would let it through
        "sample_1\n",
    ],
)
def test_unsafe_ids_are_rejected_with_a_reason(name):
    assert "unsafe sample id" in unsafe_id_reason(name)


def test_a_file_named_with_a_trailing_newline_is_rejected(tmp_path):
    clips = tmp_path / "clips"
    touch(clips / "ok.mp4")
    touch(clips / "evil\n.mp4")
    subs = write_csv(tmp_path / "s.csv", "name,chinese,english\nok,好,ok\n")
    listing = build_listing(str(clips), subs, CFG)
    assert [r["name"] for r in listing.rows] == ["ok"]
    assert [r["name"] for r in listing.rejected] == ["evil\n"]


def test_a_clip_with_tmp_in_its_name_is_listed(tmp_path):
    clips = tmp_path / "clips"
    touch(clips / "x.tmp-1.mp4")
    touch(clips / "y.tmp-0123abcd.mp4")
    subs = write_csv(tmp_path / "s.csv", "name,chinese,english\n")
    listing = build_listing(str(clips), subs, CFG)
    assert [r["name"] for r in listing.rows] == ["x.tmp-1", "y.tmp-0123abcd"]


def test_listing_keys_by_stem_and_joins_subtitles(tmp_path):
    clips = tmp_path / "clips"
    for rel in ("a.mp4", "sub/b.MKV", "c.webm", "d.avi", "notes.txt", "bad name.mp4"):
        touch(clips / rel)
    subs = write_csv(tmp_path / "s.csv", "name,chinese,english\na,你好,hello\nb,再见,bye\nghost,鬼,boo\n")
    listing = build_listing(str(clips), subs, CFG)
    by_name = {r["name"]: r for r in listing.rows}
    assert sorted(by_name) == ["a", "b", "c", "d"]
    assert by_name["a"]["subtitle"] == "hello" and by_name["a"]["subtitle_zh"] == "你好"
    assert by_name["b"]["clip"].endswith("sub/b.MKV")
    assert by_name["c"]["subtitle_missing"] and by_name["c"]["subtitle"] == ""
    assert listing.missing_subtitles == ["c", "d"] and listing.orphan_subtitles == ["ghost"]
    assert [r["name"] for r in listing.rejected] == ["bad name"]
    assert listing.rejected[0]["stage"] == "list" and "unsafe" in listing.rejected[0]["reason"]
    zh = build_listing(str(clips), subs, CFG.replace(subtitle_language="chinese"))
    assert {r["name"]: r["subtitle"] for r in zh.rows}["b"] == "再见"


def test_duplicate_stems_name_both_files(tmp_path):
    touch(tmp_path / "one" / "x.mp4")
    touch(tmp_path / "two" / "x.avi")
    with pytest.raises(ValueError) as err:
        list_clips(str(tmp_path), CFG.extensions)
    assert "one/x.mp4" in str(err.value) and "two/x.avi" in str(err.value) and "duplicate" in str(err.value)


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_clips(str(tmp_path / "nope"), CFG.extensions)


def test_subtitles_csv_problems(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        read_subtitles(write_csv(tmp_path / "a.csv", "name,text\na,hi\n"))
    with pytest.raises(ValueError, match="appears twice"):
        read_subtitles(write_csv(tmp_path / "b.csv", "name,chinese,english\na,x,y\na,x,z\n"))
    bad = tmp_path / "c.csv"
    bad.write_bytes("name,chinese,english\na,\xff,y\n".encode("latin-1"))
    with pytest.raises(ValueError, match="UTF-8"):
        read_subtitles(str(bad))
    got = read_subtitles(write_csv(tmp_path / "d.csv", '\ufeffName, Chinese ,english\n007,零,"a, b"\n\n'))
    assert got == {"007": {"chinese": "零", "english": "a, b"}}


def test_subtitles_from_s3(s3, tmp_path):
    from core import storage

    uri = s3.uri("inputs-test/subs.csv")
    storage.write_text(uri, "name,chinese,english\nq,问,ask\n")
    assert read_subtitles(uri) == {"q": {"chinese": "问", "english": "ask"}}


def test_links_out_of_the_input_folder_are_refused_and_links_inside_are_inputs(tmp_path):
    """Before: ``link.mp4 -> /etc/passwd`` was listed as a clip, and the decoder opened it."""
    outside = tmp_path / "private"
    touch(outside / "hidden.mp4")
    clips = tmp_path / "clips"
    real = touch(clips / "real.mp4")
    (clips / "passwd.mp4").symlink_to("/etc/passwd")
    (clips / "rel.mp4").symlink_to("../private/hidden.mp4")  # relative, resolved from its folder
    (clips / "inside.mp4").symlink_to(real)  # a link that stays in the folder: an ordinary input
    (clips / "linked").symlink_to(outside / "more", target_is_directory=True)  # a linked folder
    touch(outside / "more" / "deep.mp4")
    subs = write_csv(tmp_path / "s.csv", "name,chinese,english\n")
    listing = build_listing(str(clips), subs, CFG)
    assert [r["name"] for r in listing.rows] == ["inside", "real"]
    refused = {r["name"]: r for r in listing.rejected}
    assert sorted(refused) == ["deep", "passwd", "rel"]
    for r in refused.values():
        assert (r["stage"], r["outcome"]) == ("list", "failed")
        assert "symbolic link" in r["reason"] and "leads out of the input folder" in r["reason"]
        assert r["clip"] in r["reason"]
    # the input folder reached through a link of its own: the links are judged from its real path
    alias = tmp_path / "alias"
    alias.symlink_to(clips, target_is_directory=True)
    via = build_listing(str(alias), subs, CFG)
    assert [r["name"] for r in via.rows] == ["inside", "real"]
    assert sorted(r["name"] for r in via.rejected) == ["deep", "passwd", "rel"]
