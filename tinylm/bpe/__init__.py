"""The parts of the byte-level BPE tokenizer that `tinylm.tokenizer.Tokenizer` is built from.

    train.py   the fast trainer: unique chunks counted once, incremental pair counts, a heap
    files.py   GPT-2's byte-to-unicode table, GPT-2 vocab.json/merges.txt and tiktoken rank files
    native.py  the C encoder (the C runtime's tinylm_bpe_encode) on the tokenizer's own tables

Read `tinylm/tokenizer.py` first: it is the whole tokenizer in one class, and calls into these.
"""
