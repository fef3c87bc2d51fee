#!/usr/bin/python3
"""Fetch the pinned emoji npm packages and render the training set.

    /usr/bin/python3 training/fetch_data.py                 # full set, 64x64
    /usr/bin/python3 training/fetch_data.py --limit 64      # tiny subset (CI smoke)

Steps:
1. `npm pack NAME@VERSION` for every package in training/data_packages.json into
   training/cache/npm/ (skipped when the tarball is already there), then check the
   tarball's sha512 against the pinned npm `dist.integrity`.
2. Read names/keywords (emojibase-data en/data.json) and the emoji list
   (emoji-datasource emoji.json) straight from the tarballs.
3. Composite every 64x64 PNG of every style over a plain background, resize it
   to the training resolution (with a small margin) and store all images as one
   uint8 array plus the caption records:
       training/cache/emoji_<res>[_limitN].npz   images [N, res, res, 3] uint8
       training/cache/emoji_<res>[_limitN].json  [{label, tags, style, hexcode, category}]
Nothing here goes into git (training/cache/ is ignored).
"""
import argparse
import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import unicodedata

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "cache")


def ascii_text(s):
    s = s.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"').replace("\u2013", "-")
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return s.encode("ascii", "ignore").decode("ascii").strip()


def sri_sha512(path):
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def fetch_packages(spec, npm_dir):
    os.makedirs(npm_dir, exist_ok=True)
    paths = {}
    for p in spec["packages"]:
        name, ver = p["name"], p["version"]
        tgz = os.path.join(npm_dir, "%s-%s.tgz" % (name, ver))
        if not os.path.exists(tgz):
            print("npm pack %s@%s" % (name, ver), flush=True)
            subprocess.run(["npm", "pack", "%s@%s" % (name, ver), "--pack-destination", npm_dir, "--silent"],
                           check=True, stdout=subprocess.DEVNULL)
        got = sri_sha512(tgz)
        if got != p["integrity"]:
            sys.exit("integrity mismatch for %s: %s" % (tgz, got))
        paths[name] = tgz
    return paths


def read_json_member(tf, name):
    return json.load(tf.extractfile(tf.getmember(name)))


def build_records(emoji_json, emojibase, with_skins):
    """One record per (emoji) with the CLDR label and tags, in Unicode order."""
    labels = {}
    for e in emojibase:
        labels[e["hexcode"]] = (e["label"], e.get("tags") or [])
        for s in e.get("skins") or []:
            labels[s["hexcode"]] = (s["label"], e.get("tags") or [])

    def lookup(unified, fallback):
        for key in (unified, unified.replace("-FE0F", "")):
            if key in labels:
                return labels[key]
        stripped = {k.replace("-FE0F", ""): v for k, v in labels.items()}
        if unified.replace("-FE0F", "") in stripped:
            return stripped[unified.replace("-FE0F", "")]
        return fallback.lower(), []

    recs = []
    for e in sorted(emoji_json, key=lambda x: x["sort_order"]):
        if e["category"] == "Component":
            continue  # bare skin-tone swatches / hair components
        label, tags = lookup(e["unified"], e["name"] or e["short_name"])
        recs.append(dict(unified=e["unified"], image=e["image"], category=e["category"],
                         label=label, tags=tags, flags=e))
        if with_skins:
            for key, sv in sorted((e.get("skin_variations") or {}).items()):
                if "-" in key:
                    continue  # multi-person tone combinations
                slabel, _ = lookup(sv["unified"], label)
                recs.append(dict(unified=sv["unified"], image=sv["image"], category=e["category"],
                                 label=slabel, tags=tags, flags=sv))
    return recs


def render(png_bytes, res, margin, background):
    im = Image.open(io.BytesIO(png_bytes)).convert("RGBA")
    inner = res - 2 * margin
    if im.size != (inner, inner):
        # resize premultiplied to avoid dark fringes, then composite
        im = im.resize((inner, inner), Image.LANCZOS if inner < im.size[0] else Image.BICUBIC)
    canvas = Image.new("RGBA", (res, res), background + (255,))
    canvas.alpha_composite(im, (margin, margin))
    return np.asarray(canvas.convert("RGB"), dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=64, help="training resolution in pixels")
    ap.add_argument("--margin", type=int, default=4, help="empty border in pixels at --res")
    ap.add_argument("--background", default="255,255,255", help="background RGB")
    ap.add_argument("--skins", action="store_true", help="also include single skin-tone variants")
    ap.add_argument("--limit", type=int, default=0, help="only the first N emoji (per style), for smoke tests")
    ap.add_argument("--spec", default=os.path.join(HERE, "data_packages.json"))
    ap.add_argument("--out", default=None, help="output prefix (default training/cache/emoji_<res>)")
    args = ap.parse_args()

    with open(args.spec) as f:
        spec = json.load(f)
    tgz = fetch_packages(spec, os.path.join(CACHE, "npm"))
    bg = tuple(int(v) for v in args.background.split(","))

    with tarfile.open(tgz["emojibase-data"]) as tf:
        emojibase = read_json_member(tf, "package/en/data.json")
    with tarfile.open(tgz["emoji-datasource-google"]) as tf:
        emoji_json = read_json_member(tf, "package/emoji.json")
    recs = build_records(emoji_json, emojibase, args.skins)
    if args.limit:
        recs = recs[: args.limit]

    images, meta = [], []
    for style, st in spec["styles"].items():
        with tarfile.open(tgz[st["package"]]) as tf:
            members = {m.name: m for m in tf.getmembers() if m.name.startswith(st["dir"] + "/")}
            n = 0
            for r in recs:
                if not r["flags"].get(st["flag"], False):
                    continue
                m = members.get(st["dir"] + "/" + r["image"])
                if m is None:
                    continue
                images.append(render(tf.extractfile(m).read(), args.res, args.margin, bg))
                meta.append(dict(label=ascii_text(r["label"]), tags=[ascii_text(t) for t in r["tags"]],
                                 style=style, hexcode=r["unified"], category=r["category"]))
                n += 1
            print("%s: %d images" % (style, n), flush=True)

    prefix = args.out or os.path.join(CACHE, "emoji_%d%s" % (args.res, "_limit%d" % args.limit if args.limit else ""))
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    np.savez(prefix + ".npz", images=np.stack(images))
    with open(prefix + ".json", "w") as f:
        json.dump(meta, f, indent=0)
    print("wrote %s.npz (%d images, %dx%d) and %s.json" % (prefix, len(images), args.res, args.res, prefix))


if __name__ == "__main__":
    main()
