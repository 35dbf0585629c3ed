"""The tokenizers of runs interp-train did not make: a Hugging Face file and byte-level ids,
as the app reads them (labels per id, a prompt's pieces, the prompt window)."""

from __future__ import annotations

import json

import pytest

from interp_app.core.prompt import MAX_PROMPT_TOKENS, encode_prompt, window
from tests.external_runs import train_tokenizer
from training.hf_tokenizer import (
    PART,
    ByteTokenizer,
    HFTokenizer,
    load_tokenizer,
    piece_labels,
    readable,
    unique_labels,
)
from training.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    library = train_tokenizer(path)
    return library, HFTokenizer.from_file(path, 300), path


def test_pieces_are_the_text_the_library_cut(bpe):
    library, tok, _ = bpe
    text = "the cat sat on the mat"
    enc = library.encode(text, add_special_tokens=False)
    pieces = tok.pieces(text)
    assert pieces.ids == tuple(enc.ids)
    assert pieces.labels == tuple(text[a:b] for a, b in enc.offsets)
    assert "".join(pieces.labels) == text
    assert pieces.unknown == ()


def test_a_character_split_over_tokens_is_marked_on_each_part(bpe):
    _, tok, _ = bpe
    labels = tok.pieces("x→y").labels  # "→" is three bytes, none merged in this BPE
    assert labels == ("x", f"→{PART}1/3", f"→{PART}2/3", f"→{PART}3/3", "y")
    assert piece_labels("ab", [(0, 1), (1, 2)]) == ("a", "b")


def test_labels_are_readable_unique_and_cover_the_models_ids(bpe):
    library, tok, _ = bpe
    assert len(tok.vocab) == 300 > library.get_vocab_size()
    assert len(set(tok.vocab)) == 300
    assert tok.vocab[0] == "<|endoftext|>"  # a special token keeps its name
    assert tok.vocab[299] == "<id 299>" and "<id 299>" in tok.special
    cat = tok.encode(" cat")
    assert len(cat) == 1 and tok.vocab[cat[0]] == " cat"  # Ġcat, as the text it stands for
    assert tok.index[" cat"] == cat[0]
    assert readable("ðŁ") == "\\xf0\\x9f"  # half a character: its bytes
    with pytest.raises(ValueError, match=r"token id 2[0-9][0-9] but the model has 100 ids"):
        HFTokenizer(library, 100)


def test_the_largest_id_not_the_token_count_bounds_the_vocabulary():
    from tokenizers import Tokenizer as HFFile
    from tokenizers import models

    sparse = HFFile(models.WordLevel({"[UNK]": 0, "the": 1, "cat": 4000}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match=r"token id 4000 but the model has 300 ids \(0..299\)"):
        HFTokenizer(sparse, 300)  # three tokens, but "cat" would index row 4000 of wte


def test_repeated_labels_stay_unique_when_a_suffix_is_taken():
    assert unique_labels(["x", "x <id 2>", "x"]) == ("x", "x <id 2>", "x <id 2> <id 2>")
    assert unique_labels(["x", "x", "x <id 1>"]) == ("x", "x <id 1> <id 1>", "x <id 1>")
    labels = unique_labels(["a", "a", "a <id 1>", "a <id 1>", "a"])
    assert len(set(labels)) == 5 and labels[0] == "a" and labels[2] == "a <id 1>"


def test_trimmed_offsets_label_each_piece_by_its_token(bpe):
    """A ByteLevel post-processor with trim_offsets (as GPT-NeoX-20B's tokenizer.json may
    have) cuts the leading space off each span, and a lone space's span is empty."""
    library, _, _ = bpe
    from tokenizers import Tokenizer as HFFile

    spec = json.loads(library.to_str())
    spec["post_processor"] = {
        "type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True,
    }  # fmt: skip
    trimmed = HFTokenizer(HFFile.from_str(json.dumps(spec)), 300)
    assert trimmed.trims_offsets
    text = "the   cat sat"
    enc = trimmed.tokenizer.encode(text, add_special_tokens=False)
    assert any(a == b for a, b in enc.offsets)  # the library's empty spans
    pieces = trimmed.pieces(text)
    assert all(pieces.labels) and " cat" in pieces.labels
    assert pieces.labels == tuple(trimmed.vocab[i] for i in pieces.ids)  # the target labels
    assert [trimmed.index[label] for label in pieces.labels] == list(pieces.ids)


def test_byte_fallback():
    tok = ByteTokenizer(260)
    assert tok.encode("é!") == [0xC3, 0xA9, 0x21]
    assert tok.pieces("é!").labels == (f"é{PART}1/2", f"é{PART}2/2", "!")
    assert tok.vocab[ord("a")] == "a" and tok.vocab[10] == "<0x0A>" and tok.vocab[257] == "<id 257>"
    assert tok.special == frozenset({"<id 256>", "<id 257>", "<id 258>", "<id 259>"})
    with pytest.raises(ValueError, match="256"):
        ByteTokenizer(100)


def test_run_json_names_the_tokenizer(bpe, tmp_path):
    _, _, path = bpe
    run = path.parent
    assert isinstance(load_tokenizer({"vocab": ["a", "UNKNOWN", "PADDING"]}, run, 3), Tokenizer)
    assert isinstance(load_tokenizer({"tokenizer": {"kind": "bytes"}}, run, 256), ByteTokenizer)
    spec = {"tokenizer": {"kind": "huggingface", "file": "tokenizer.json"}}
    assert load_tokenizer(spec, run, 300).kind == "huggingface"
    for bad in ("../tokenizer.json", "..", "", None, "missing.json"):
        with pytest.raises(ValueError, match="tokenizer file"):
            load_tokenizer({"tokenizer": {"kind": "huggingface", "file": bad}}, run, 300)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(ValueError, match="cannot be read"):
        load_tokenizer(spec, tmp_path, 300)
    with pytest.raises(ValueError, match="names no tokenizer"):
        load_tokenizer({}, run, 300)


def test_a_long_context_pads_to_the_window_and_cuts_the_front():
    tok = ByteTokenizer(256)
    assert window(1024) == MAX_PROMPT_TOKENS and window(12) == 12
    p = encode_prompt(tok, 1024, "abcdefgh", cap=5)
    assert p.ids == tuple(b"defgh") and p.dropped == 3 and len(p.padded) == 5
    short = encode_prompt(tok, 1024, "ab", cap=5)
    assert short.padded == (97, 98, 0, 0, 0) and short.words == ("a", "b")


def test_word_tokenizer_pieces_as_before():
    tok = Tokenizer(("i", "like", "UNKNOWN", "PADDING"))
    p = encode_prompt(tok, 12, "I like durian")
    assert p.words == ("i", "like", "UNKNOWN") and p.unknown == ("durian",)
    assert p.padded == (0, 1, 2) + (3,) * 9
    cut = encode_prompt(tok, 2, "durian i like")
    assert cut.words == ("i", "like") and cut.unknown == () and cut.dropped == 1
