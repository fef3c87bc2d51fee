#!/usr/bin/python3
"""Measures how well a model's pictures follow their prompts, through the C++ engine.

For a fixed list of prompts (emoji names in three kinds of wording, below) and a few seeds,
`sdrt generate` draws every image. Each image is then scored by nearest-neighbour retrieval
among the training set's images (pixel space, 32x32, RGB in [0, 1]):

  top-1: the nearest training image carries the prompt's emoji name;
  top-5: the prompt's name is among the names of the 5 nearest distinct emoji.

The same images are scored against a shuffled assignment of the prompts' names (every image
paired with another prompt's name, averaged over many permutations): what the score would be
if the picture did not depend on the prompt. Chance for a single name is 1/1906.

  /usr/bin/python3 training/evaluate_adherence.py --model models/sdrt-emoji \
      --out docs/adherence --seeds 1 2 3

writes results.json, a markdown table (also printed) and a contact sheet into --out
(contact_sheet.png: one panel per wording group, left to right; one row per prompt with its
top-1 hits over the seeds, one column per seed, then the training image nearest to the first
seed's picture).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (prompt, emoji name it asks for), in three groups of wording:
#   caption:  the training captions' base form "<name>, <style> style"; the data set holds every
#             name in both styles, so no name/style pair is new.
#   template: framings that train.py's CAPTION_TEMPLATES put around names ("cartoon", "emoji",
#             "icon", articles, no style), with names the templates may or may not have met.
#   held-out: framings no caption template had ("a drawing of", "sticker", "clipart", ...):
#             how the model copes with words it was never taught to frame a name.
CAPTION = [
    ("red apple, google style", "red apple"),
    ("red apple, twitter style", "red apple"),
    ("green apple, twitter style", "green apple"),
    ("banana, google style", "banana"),
    ("pizza, twitter style", "pizza"),
    ("watermelon, google style", "watermelon"),
    ("grinning face, google style", "grinning face"),
    ("pile of poo, twitter style", "pile of poo"),
    ("red heart, google style", "red heart"),
    ("blue heart, twitter style", "blue heart"),
    ("cat face, google style", "cat face"),
    ("dog face, twitter style", "dog face"),
    ("penguin, google style", "penguin"),
    ("fire, google style", "fire"),
    ("sun, twitter style", "sun"),
    ("snowman, twitter style", "snowman"),
    ("rocket, google style", "rocket"),
    ("house, twitter style", "house"),
    ("automobile, google style", "automobile"),
    ("soccer ball, twitter style", "soccer ball"),
    ("deciduous tree, google style", "deciduous tree"),
    ("cactus, twitter style", "cactus"),
    ("sunflower, google style", "sunflower"),
    ("carrot, twitter style", "carrot"),
]
TEMPLATE = [
    ("cartoon bird", "bird"),
    ("red apple", "red apple"),
    ("a red apple emoji", "red apple"),
    ("cartoon pizza", "pizza"),
    ("a banana icon", "banana"),
    ("cartoon cat face", "cat face"),
    ("a penguin emoji", "penguin"),
    ("fire icon", "fire"),
    ("a red heart", "red heart"),
    ("cartoon rocket", "rocket"),
    ("snowman emoji", "snowman"),
    ("a sunflower", "sunflower"),
    ("cartoon carrot", "carrot"),
    ("a grinning face icon", "grinning face"),
    ("cartoon watermelon", "watermelon"),
    ("a soccer ball", "soccer ball"),
]
HELD_OUT = [
    ("a drawing of a bird", "bird"),
    ("red apple sticker", "red apple"),
    ("a picture of a banana", "banana"),
    ("pizza clipart", "pizza"),
    ("a cute cat face", "cat face"),
    ("penguin illustration", "penguin"),
    ("fire symbol", "fire"),
    ("a small red heart", "red heart"),
    ("rocket drawing", "rocket"),
    ("a happy snowman", "snowman"),
    ("sunflower sticker", "sunflower"),
    ("carrot clipart", "carrot"),
    ("a drawing of a watermelon", "watermelon"),
    ("soccer ball symbol", "soccer ball"),
    ("a picture of a house", "house"),
    ("dog face sticker", "dog face"),
]
GROUPS = [("caption", CAPTION), ("template", TEMPLATE), ("held-out", HELD_OUT)]


def load_training_set(prefix):
    images = np.load(prefix + ".npz")["images"]
    with open(prefix + ".json") as f:
        meta = json.load(f)
    return images, [m["label"] for m in meta]


def features(images_u8):
    """NHWC uint8 at 64x64 -> [N, 32*32*3] float32: 2x2 box average, values in [0, 1]."""
    x = images_u8.astype(np.float32) / 255.0
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return x.reshape(n, -1)


def nearest_names(query, bank, bank_names, k):
    """For each query row: indices of the bank sorted by distance, and the first k distinct names."""
    d = (query ** 2).sum(1)[:, None] - 2.0 * query @ bank.T + (bank ** 2).sum(1)[None, :]
    order = np.argsort(d, axis=1)
    names = []
    for row in order:
        seen = []
        for j in row:
            if bank_names[j] not in seen:
                seen.append(bank_names[j])
                if len(seen) == k:
                    break
        names.append(seen)
    return order[:, 0], names


def accuracy(retrieved, targets):
    top1 = np.mean([r[0] == t for r, t in zip(retrieved, targets)])
    top5 = np.mean([t in r[:5] for r, t in zip(retrieved, targets)])
    return float(top1), float(top5)


def shuffled_baseline(retrieved, targets, permutations, seed=0):
    """Accuracy when every image is scored against another prompt's name."""
    rng = np.random.RandomState(seed)
    n = len(targets)
    top1, top5 = [], []
    for _ in range(permutations):
        perm = rng.permutation(n)
        while np.any(perm == np.arange(n)):  # a derangement: nobody keeps its own prompt
            perm = rng.permutation(n)
        a, b = accuracy(retrieved, [targets[p] for p in perm])
        top1.append(a)
        top5.append(b)
    return float(np.mean(top1)), float(np.mean(top5))


def generate(sdrt, model, prompt, seed, steps, guidance, threads, path, precision=None):
    cmd = [sdrt, "generate", "--model", model, "--prompt", prompt, "--seed", str(seed),
           "--steps", str(steps), "--guidance", str(guidance), "--output", path, "--quiet"]
    if precision:
        cmd += ["--precision", precision]
    if threads:
        cmd += ["--threads", str(threads)]
    subprocess.run(cmd, check=True)
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def contact_sheet(panels, path, label_width=250, gap=16):
    """panels: lists of (label, [images...]) rows, drawn side by side; each row's label is left of
    its images (64x64, unscaled)."""
    from PIL import Image, ImageDraw
    h, w = panels[0][0][1][0].shape[:2]
    cols = max(len(r[1]) for rows in panels for r in rows)
    panel_w = label_width + cols * w
    n_rows = max(len(rows) for rows in panels)
    sheet = Image.new("RGB", (len(panels) * panel_w + (len(panels) - 1) * gap, n_rows * h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for p, rows in enumerate(panels):
        x0 = p * (panel_w + gap)
        for r, (label, images) in enumerate(rows):
            draw.text((x0 + 4, r * h + h // 2 - 6), label, fill=(0, 0, 0))
            for c, img in enumerate(images):
                sheet.paste(Image.fromarray(img), (x0 + label_width + c * w, r * h))
        if p:
            draw.line([(x0 - gap // 2, 0), (x0 - gap // 2, n_rows * h)], fill=(160, 160, 160))
    # A 256-colour palette is plenty for 64x64 emoji and keeps the PNG in docs/ a third the size.
    sheet.quantize(256).save(path, optimize=True)


def markdown(summary):
    lines = ["| prompts | images | top-1 | top-5 | shuffled top-1 | shuffled top-5 |",
             "|---|---|---|---|---|---|"]
    for group in [g for g, _ in GROUPS] + ["all"]:
        s = summary[group]
        lines.append("| %s | %d | %.1f %% | %.1f %% | %.1f %% | %.1f %% |" % (
            group, s["images"], 100 * s["top1"], 100 * s["top5"],
            100 * s["shuffled_top1"], 100 * s["shuffled_top5"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "default"))
    ap.add_argument("--sdrt", default=os.path.join(ROOT, "build", "sdrt"))
    ap.add_argument("--data", default=os.path.join(HERE, "cache", "emoji_64"),
                    help="training set prefix (.npz + .json), from training/fetch_data.py")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--threads", type=int, default=0, help="sdrt threads (default: its own default)")
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--out", required=True, help="folder for results.json, results.md, contact_sheet.png")
    args = ap.parse_args()

    for path in (args.sdrt, args.data + ".npz"):
        if not os.path.exists(path):
            sys.exit("evaluate_adherence: %s is missing (build sdrt / run training/fetch_data.py)" % path)
    os.makedirs(args.out, exist_ok=True)
    bank_images, bank_names = load_training_set(args.data)
    bank_set = set(bank_names)
    for _, name in [case for _, cases in GROUPS for case in cases]:
        if name not in bank_set:
            sys.exit("evaluate_adherence: '%s' is not an emoji name in the training set" % name)
    bank = features(bank_images)

    cases = [(group, p, n) for group, prompts in GROUPS for p, n in prompts]
    t0 = time.time()
    generated, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (group, prompt, name) in enumerate(cases):
            for seed in args.seeds:
                img = generate(args.sdrt, args.model, prompt, seed, args.steps, args.guidance, args.threads,
                               os.path.join(tmp, "img.png"))
                generated.append(img)
                records.append(dict(group=group, prompt=prompt, name=name, seed=seed))
            print("\r%d/%d prompts" % (i + 1, len(cases)), end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = time.time() - t0

    nearest, retrieved = nearest_names(features(np.stack(generated)), bank, bank_names, 5)
    for rec, r in zip(records, retrieved):
        rec["retrieved"] = r
    summary = {}
    for group in [g for g, _ in GROUPS] + ["all"]:
        idx = [i for i, r in enumerate(records) if group == "all" or r["group"] == group]
        ret = [retrieved[i] for i in idx]
        tgt = [records[i]["name"] for i in idx]
        top1, top5 = accuracy(ret, tgt)
        s1, s5 = shuffled_baseline(ret, tgt, args.permutations)
        summary[group] = dict(images=len(idx), top1=top1, top5=top5, shuffled_top1=s1, shuffled_top5=s5)

    result = dict(model=os.path.abspath(args.model), seeds=args.seeds, steps=args.steps, guidance=args.guidance,
                  metric="nearest neighbour among %d training images, 32x32 RGB L2" % len(bank_names),
                  generate_seconds=round(seconds, 1), summary=summary, images=records)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    table = markdown(summary)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    panels = {g: [] for g, _ in GROUPS}
    for i, (group, prompt, name) in enumerate(cases):
        k = i * len(args.seeds)
        imgs = generated[k:k + len(args.seeds)] + [bank_images[nearest[k]]]
        hits = sum(records[k + j]["retrieved"][0] == name for j in range(len(args.seeds)))
        panels[group].append(("%s  [%d/%d]" % (prompt, hits, len(args.seeds)), imgs))
    contact_sheet([panels[g] for g, _ in GROUPS], os.path.join(args.out, "contact_sheet.png"))
    print(table)
    print("%d images in %.0f s; details in %s" % (len(records), seconds, os.path.join(args.out, "results.json")))


if __name__ == "__main__":
    main()
