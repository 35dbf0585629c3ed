from training.corpus import builtin_corpus
from training.tokenizer import PADDING, UNKNOWN, Tokenizer


def test_vocabulary_is_the_articles():
    tok = Tokenizer.from_lines(builtin_corpus().train)
    assert len(tok) == 19
    words = tok.vocab[:-2]
    assert list(words) == sorted(words)
    assert tok.vocab[-2:] == (UNKNOWN, PADDING)
    assert {"chili", "spicy", "apple", "sweet", "lemon", "sour", "orange", "juicy"} <= set(words)


def test_round_trip_lower_cases_and_splits_words():
    tok = Tokenizer.from_lines(builtin_corpus().train)
    ids = tok.encode("I like Spicy, so I like chili!")
    assert tok.decode(ids) == ["i", "like", "spicy", "so", "i", "like", "chili"]


def test_unknown_words_map_to_unknown():
    tok = Tokenizer.from_lines(builtin_corpus().train)
    ids = tok.encode("i like durian")
    assert tok.decode(ids) == ["i", "like", UNKNOWN]
    assert tok.unknown_words("i like durian") == ["durian"]


def test_vocabulary_is_deterministic():
    lines = ["b a c", "c a"]
    assert Tokenizer.from_lines(lines) == Tokenizer.from_lines(list(reversed(lines)))
