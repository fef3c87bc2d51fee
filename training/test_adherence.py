"""The adherence score's retrieval and baseline (evaluate_adherence.py), on synthetic images."""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import evaluate_adherence as ea  # noqa: E402


def solid(rgb):
    return np.full((64, 64, 3), rgb, np.uint8)


class RetrievalTest(unittest.TestCase):
    def setUp(self):
        colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
        # two images per name (two "styles"), slightly different shades
        self.bank_images = np.stack([solid(c) for c in colours] + [solid(tuple(v * 0.9 for v in c)) for c in colours])
        self.names = ["n%d" % i for i in range(6)] * 2
        self.bank = ea.features(self.bank_images)

    def test_features_shape_and_range(self):
        f = ea.features(self.bank_images[:2])
        self.assertEqual(f.shape, (2, 32 * 32 * 3))
        self.assertAlmostEqual(float(f[0, 0]), 1.0)
        self.assertGreaterEqual(float(f.min()), 0.0)

    def test_nearest_names_are_distinct_and_ordered(self):
        noisy = np.clip(self.bank_images[:6].astype(int) + 7, 0, 255).astype(np.uint8)
        nearest, names = ea.nearest_names(ea.features(noisy), self.bank, self.names, 5)
        for i, row in enumerate(names):
            self.assertEqual(row[0], "n%d" % i)
            self.assertEqual(len(row), 5)
            self.assertEqual(len(set(row)), 5)
            self.assertEqual(self.names[nearest[i]], "n%d" % i)

    def test_accuracy_counts_top1_and_top5(self):
        retrieved = [["a", "b", "c", "d", "e"], ["b", "a", "c", "d", "e"], ["x", "y", "z", "w", "v"]]
        top1, top5 = ea.accuracy(retrieved, ["a", "a", "a"])
        self.assertAlmostEqual(top1, 1 / 3)
        self.assertAlmostEqual(top5, 2 / 3)

    def test_shuffled_baseline_is_low_when_images_follow_prompts(self):
        noisy = np.clip(self.bank_images[:6].astype(int) - 5, 0, 255).astype(np.uint8)
        _, retrieved = ea.nearest_names(ea.features(noisy), self.bank, self.names, 1)
        targets = ["n%d" % i for i in range(6)]
        self.assertEqual(ea.accuracy(retrieved, targets), (1.0, 1.0))
        s1, _ = ea.shuffled_baseline(retrieved, targets, permutations=20)
        self.assertEqual(s1, 0.0)  # every image scored against another prompt's name

    def test_shuffled_baseline_equals_accuracy_when_images_ignore_prompts(self):
        # the same picture for every prompt: matched and shuffled scores agree
        retrieved = [["n0", "n1", "n2", "n3", "n4"]] * 6
        targets = ["n0", "n0", "n0", "n5", "n5", "n5"]
        top1, _ = ea.accuracy(retrieved, targets)
        s1, _ = ea.shuffled_baseline(retrieved, targets, permutations=200)
        self.assertAlmostEqual(top1, 0.5)
        self.assertAlmostEqual(s1, 0.5, delta=0.1)


if __name__ == "__main__":
    unittest.main()
