"""Loading a T5 tokenizer, or training a SentencePiece unigram one in T5's layout.

T5 layout: `<pad>`=0, `</s>`=1, `<unk>`=2, then the pieces, then 100 sentinels with `<extra_id_0>` the highest id
(`<extra_id_99>` the lowest of them). transformers' `T5Tokenizer.from_pretrained(folder_with_spiece.model)` builds
exactly this; `T5Tokenizer(vocab_file=...)` would silently ignore the file (see shared/STACK.md), so never use it.
A pre-training objective's own special tokens (UL2's mode tokens [NLU] [NLG] [S2S]) are added after all of these.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer

from t5kit.args import UsageError

logger = logging.getLogger(__name__)

NUM_SENTINELS = 100  # T5's extra_ids: <extra_id_0> ... <extra_id_99>
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2  # T5's special ids
MAX_TOKENIZER_TRAINING_TEXTS = 2_000_000  # SentencePiece samples at most this many texts (it holds them in memory)
MAX_TOKENIZER_TEXT_CHARS = 20_000  # longer texts are cut into pieces of this size for SentencePiece


def _bounded_texts(texts: Iterable[str]) -> Iterable[str]:
    for text in texts:
        text = text.strip()
        for start in range(0, len(text), MAX_TOKENIZER_TEXT_CHARS):
            yield text[start : start + MAX_TOKENIZER_TEXT_CHARS]


def train_tokenizer(texts: Iterable[str], vocab_size: int, output_dir: str | Path) -> T5Tokenizer:
    """Trains a SentencePiece unigram model of `vocab_size` tokens in all (sentinels included); saves it HF-style.

    >>> tok = train_tokenizer(corpus_texts, vocab_size=1000, output_dir="run/tokenizer")  # doctest: +SKIP
    >>> tok.convert_tokens_to_ids(["<pad>", "</s>", "<unk>", "<extra_id_0>"])  # doctest: +SKIP
    [0, 1, 2, 999]
    """
    import sentencepiece as spm

    pieces = vocab_size - NUM_SENTINELS
    if pieces < 16:
        raise UsageError(f"--vocab_size {vocab_size} is too small: it must leave room for {NUM_SENTINELS} sentinels")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sample = itertools.islice(_bounded_texts(texts), MAX_TOKENIZER_TRAINING_TEXTS)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sample,
                model_prefix=str(Path(tmp) / "spiece"),
                vocab_size=pieces,
                model_type="unigram",
                pad_id=PAD_ID,
                eos_id=EOS_ID,
                unk_id=UNK_ID,
                bos_id=-1,
                pad_piece="<pad>",
                eos_piece="</s>",
                unk_piece="<unk>",
                character_coverage=0.9995,
                max_sentence_length=MAX_TOKENIZER_TEXT_CHARS * 4,  # bytes
                num_threads=2,
                minloglevel=2,
            )
        except RuntimeError as err:
            raise UsageError(
                f"--vocab_size {vocab_size}: SentencePiece could not train on this corpus ({err}). "
                "A small corpus supports only a small vocabulary: try a smaller --vocab_size."
            ) from None
        tokenizer = T5Tokenizer.from_pretrained(tmp, extra_ids=NUM_SENTINELS)
    check_sentinels(tokenizer)
    tokenizer.save_pretrained(output_dir)
    logger.info("trained a %d-token unigram tokenizer -> %s", len(tokenizer), output_dir)
    return tokenizer


def check_sentinels(tokenizer: PreTrainedTokenizerBase, needed: int = 1) -> list[int]:
    """Returns the ids of `<extra_id_0..needed-1>`; raises if the tokenizer lacks them (span corruption needs them)."""
    tokens = [f"<extra_id_{i}>" for i in range(needed)]
    ids = tokenizer.convert_tokens_to_ids(tokens)
    missing = [tok for tok, i in zip(tokens, ids) if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise UsageError(f"the tokenizer has no {missing[0]} token; span corruption needs T5 sentinel tokens")
    return ids


def add_special_tokens(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[str]) -> list[int]:
    """Adds `tokens` (e.g. UL2's mode tokens [NLU] [NLG] [S2S]) as special tokens where the tokenizer lacks them, after
    its last id in the given order (a token it has keeps its id; the existing special tokens stay special); returns
    their ids. Special tokens are never split, and `decode(..., skip_special_tokens=True)` drops them.

    >>> add_special_tokens(tok, ["[NLU]", "[NLG]", "[S2S]"])  # doctest: +SKIP  (a 300-token tokenizer)
    [300, 301, 302]
    """
    if tokens:
        tokenizer.add_special_tokens({"extra_special_tokens": list(tokens)}, replace_extra_special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    return [int(i) for i in ids]


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Loads a tokenizer by hub name or folder, with a clear error when it cannot be found."""
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise UsageError(
            f"--tokenizer_name_or_path {name_or_path}: cannot load a tokenizer ({str(err).splitlines()[0]})"
        ) from None


TOKENIZER_SUBDIR = "tokenizer"  # a tokenizer trained with --vocab_size is kept in the run folder, so resumes reuse it


def resolve_tokenizer(
    model_args,
    train_args,
    texts: Callable[[], Iterable[str]],
    needs_sentinels: bool,
    special_tokens: Sequence[str] = (),
):
    """The run's tokenizer: --tokenizer_name_or_path, the checkpoint's, or one trained with --vocab_size on `texts()`
    (once, on the main process; other processes and resumed runs load the saved one). `special_tokens` (the
    objective's, e.g. UL2's mode tokens) are added to it either way, after its last id: the tokenizer saved in the
    run folder's tokenizer/ keeps --vocab_size tokens, and every start adds them again with the same ids."""
    if model_args.vocab_size is None:
        name = model_args.tokenizer_name_or_path or model_args.model_name_or_path
        if name is None:
            raise UsageError("give --tokenizer_name_or_path, or --vocab_size N to train a tokenizer on the data")
        tokenizer = load_tokenizer(name)
    else:
        saved = Path(train_args.output_dir) / TOKENIZER_SUBDIR
        with train_args.main_process_first(desc="tokenizer training"):
            if (saved / "tokenizer_config.json").is_file():
                tokenizer = load_tokenizer(str(saved))
                if len(tokenizer) != model_args.vocab_size:
                    raise UsageError(
                        f"{saved} holds a tokenizer of {len(tokenizer)} tokens from an earlier run, but "
                        "--vocab_size is "
                        f"{model_args.vocab_size}: choose another --output_dir, or delete {saved} to train a new one"
                    )
            else:
                tokenizer = train_tokenizer(texts(), model_args.vocab_size, saved)
    if needs_sentinels:
        check_sentinels(tokenizer)
    add_special_tokens(tokenizer, special_tokens)
    return tokenizer
