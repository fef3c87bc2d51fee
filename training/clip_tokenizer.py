"""Small CLIP BPE tokenizer (SD 1.5 vocab.json + merges.txt), pure Python.

Matches transformers' slow CLIPTokenizer without ftfy for ASCII text
(lower-casing, whitespace collapsing, the CLIP regex, byte-level BPE with
`</w>` word ends, BOS + 75 tokens + EOS truncation, padding with
`<|endoftext|>`).  Non-ASCII text is approximated (no BERT CJK splitting,
no control-character stripping beyond whitespace) - training captions are
ASCII.
"""
import json
import os
import re

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

_PAT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+",
                  re.IGNORECASE)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class CLIPTokenizer:
    def __init__(self, folder, max_length=77):
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(l.split()) for l in lines[1:] if l.strip()]
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.cache = {BOS: BOS, EOS: EOS}
        self.max_length = max_length
        self.bos_id = self.encoder[BOS]
        self.eos_id = self.encoder[EOS]
        self.pad_id = self.eos_id

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            a, b = best
            new = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    new.append(a + b)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        self.cache[token] = word
        return word

    def tokenize(self, text):
        text = " ".join(text.split()).lower()
        out = []
        for tok in _PAT.findall(text):
            if tok in (BOS, EOS):
                out.append(tok)
                continue
            t = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            out.extend(self.bpe(t))
        return out

    def encode(self, text):
        return [self.encoder.get(t, self.eos_id) for t in self.tokenize(text)]

    def __call__(self, text, pad=True, truncate=True):
        ids = self.encode(text)
        if truncate:
            ids = ids[: self.max_length - 2]
        ids = [self.bos_id] + ids + [self.eos_id]
        if pad:
            ids = ids + [self.pad_id] * (self.max_length - len(ids))
        return ids
