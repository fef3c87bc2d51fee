"""Caption making (train.py CaptionMaker): the default is the shipped model's caption stream;
augmentation adds framings and stray words only when asked."""
import os
import random
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import train  # noqa: E402
from clip_tokenizer import CLIPTokenizer  # noqa: E402

META = [dict(label="red apple", tags=["fruit", "apple"], style="google"),
        dict(label="owl", tags=["bird", "wise"], style="twitter")]


class CaptionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tok = CLIPTokenizer(os.path.join(os.path.dirname(HERE), "models", "sdrt-emoji", "tokenizer"))

    def test_default_is_name_keywords_and_style(self):
        make = train.CaptionMaker(self.tok, META)
        rng = random.Random(3)
        for _ in range(200):
            rec = META[rng.randrange(2)]
            words = make(rec, rng).split(", ")
            self.assertEqual(words[0], rec["label"])
            for w in words[1:]:
                self.assertTrue(w in rec["tags"] or w == rec["style"] + " style", w)

    def test_augmentation_frames_names_and_adds_unknown_words(self):
        make = train.CaptionMaker(self.tok, META, p_template=1.0, p_stray=1.0)
        rng = random.Random(4)
        framed = [make(META[0], rng) for _ in range(100)]
        self.assertTrue(all({"red", "apple"} <= set(c.replace(",", "").split()) for c in framed))
        self.assertTrue(any(c.startswith("cartoon") or "emoji" in c or "icon" in c for c in framed))
        self.assertTrue(all(len(c.split()) > len("red apple".split()) for c in framed))
        self.assertNotIn("apple", make.stray_words)  # label words never count as stray
        self.assertEqual(train.with_article("a {} emoji", "owl"), "an owl emoji")


if __name__ == "__main__":
    unittest.main()
