#!/usr/bin/env python3
"""Generates src/tokenizer/unicode_tables.cpp from Python's own `unicodedata`.

The reference tokenizer (transformers' slow CLIPTokenizer without ftfy) is pure Python: its
character classes, lowercasing and NFC all come from the interpreter's Unicode database. Taking
every table from that same database (and nothing else) is what makes the C++ tokenizer agree with
it character for character. The reference ran Python 3.11, whose database is Unicode 14.0.0; a
different version changes which code points are unassigned (and so dropped), so the script refuses
to run on one unless --allow-other-version is given.

Usage: python3 scripts/gen_unicode_tables.py [--allow-other-version] [-o src/tokenizer/unicode_tables.cpp]
"""

import argparse
import os
import sys
import unicodedata

EXPECTED_UNICODE_VERSION = "14.0.0"
MAX_CODE_POINT = 0x10FFFF
CAPITAL_SIGMA = "\u03a3"
FINAL_SIGMA = "\u03c2"

# Must match the bit values in src/tokenizer/unicode_tables.h.
LETTER = 1 << 0
NUMBER = 1 << 1
DROPPED = 1 << 2
BLANK = 1 << 3
SPLIT_SPACE = 1 << 4
CJK_IDEOGRAPH = 1 << 5
CASED = 1 << 6
CASE_IGNORABLE = 1 << 7
SKIPPED_BY_CLIP_REGEX = 1 << 8

# BERT's _is_chinese_char: a fixed list of blocks, not a Unicode property.
CJK_IDEOGRAPH_RANGES = [
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
]

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3  # composed algorithmically in C++, not tabled


def is_cjk_ideograph(cp):
    return any(first <= cp <= last for first, last in CJK_IDEOGRAPH_RANGES)


def sigma_context_class(ch):
    """Cased / Case_Ignorable as CPython's str.lower() sees them for the final-sigma rule.

    unicodedata does not expose these derived properties, so they are read back from lower()
    itself: 'Σ' after ch becomes 'ς' only when ch is cased; a case-ignorable ch is skipped, so
    'A' + ch + 'Σ' still ends in 'ς'. A character that is both counts as ignorable, which is
    also how CPython's scan treats it.
    """
    alone = (ch + CAPITAL_SIGMA).lower()[-1] == FINAL_SIGMA
    after_cased = ("A" + ch + CAPITAL_SIGMA).lower()[-1] == FINAL_SIGMA
    if alone:
        return CASED
    if after_cased:
        return CASE_IGNORABLE
    return 0


def skipped_by_clip_regex(ch, category):
    """True for characters that no alternative of the CLIP pattern matches although they are not space.

    The pattern is compiled with IGNORECASE. Under it the `regex` module keeps a character out of
    [^\\s\\p{L}\\p{N}] when one of its case variants is a letter or number, while [\\p{L}] and
    [\\p{N}] still test the character itself, so findall() steps over it like whitespace
    (in Unicode 14 that is U+0345, whose uppercase is a Greek iota).
    """
    if category[0] in "LN" or ch.isspace():
        return False
    variants = {ch.lower(), ch.upper(), ch.casefold()}
    return any(len(v) == 1 and unicodedata.category(v)[0] in "LN" for v in variants)


def char_flags(cp):
    ch = chr(cp)
    category = unicodedata.category(ch)
    flags = 0
    if category.startswith("L"):
        flags |= LETTER
    if category.startswith("N"):
        flags |= NUMBER
    # BERT _clean_text: NUL, U+FFFD and every C* category (Cc, Cf, Cn, Co, Cs) except \t \n \r.
    if cp == 0 or cp == 0xFFFD or (category.startswith("C") and ch not in "\t\n\r"):
        flags |= DROPPED
    # BERT _is_whitespace: becomes a plain space.
    if ch in " \t\n\r" or category == "Zs":
        flags |= BLANK
    if ch.isspace():
        flags |= SPLIT_SPACE
    if is_cjk_ideograph(cp):
        flags |= CJK_IDEOGRAPH
    flags |= sigma_context_class(ch)
    if skipped_by_clip_regex(ch, category):
        flags |= SKIPPED_BY_CLIP_REGEX
    return flags


def flag_ranges():
    """Run-length encoding: each entry's flags hold until the next entry's first code point."""
    ranges = []
    previous = None
    for cp in range(MAX_CODE_POINT + 1):
        flags = char_flags(cp)
        if flags != previous:
            ranges.append((cp, flags))
            previous = flags
    return ranges


def lowercase_mappings():
    mappings = []
    for cp in range(MAX_CODE_POINT + 1):
        lowered = chr(cp).lower()
        if lowered == chr(cp):
            continue
        if len(lowered) > 2:
            sys.exit(f"U+{cp:04X} lowercases to {len(lowered)} code points; the table holds 2")
        codes = [ord(c) for c in lowered] + [0] * (2 - len(lowered))
        mappings.append((cp, codes[0], codes[1]))
    return mappings


def combining_class_ranges():
    ranges = []
    for cp in range(MAX_CODE_POINT + 1):
        ccc = unicodedata.combining(chr(cp))
        if ccc == 0:
            continue
        if ranges and ranges[-1][1] == cp - 1 and ranges[-1][2] == ccc:
            ranges[-1] = (ranges[-1][0], cp, ccc)
        else:
            ranges.append((cp, cp, ccc))
    return ranges


def canonical_decomposition_pair(ch):
    """The one-step canonical mapping when it is a pair, else None (compatibility ones have a <tag>)."""
    mapping = unicodedata.decomposition(ch)
    if not mapping or mapping.startswith("<"):
        return None
    parts = [int(p, 16) for p in mapping.split()]
    return parts if len(parts) == 2 else None


def full_decompositions():
    """cp -> full canonical decomposition (NFD of the single character), Hangul excluded."""
    result = []
    for cp in range(MAX_CODE_POINT + 1):
        if HANGUL_FIRST <= cp <= HANGUL_LAST or 0xD800 <= cp <= 0xDFFF:
            continue
        decomposed = unicodedata.normalize("NFD", chr(cp))
        if decomposed != chr(cp):
            result.append((cp, [ord(c) for c in decomposed]))
    return result


def primary_composites():
    """(first, second) -> composite for every pair NFC may recompose.

    A character with a two-element canonical mapping is a primary composite unless it is
    excluded from composition; the excluded ones are exactly those NFC does not leave alone.
    """
    pairs = []
    for cp in range(MAX_CODE_POINT + 1):
        if HANGUL_FIRST <= cp <= HANGUL_LAST or 0xD800 <= cp <= 0xDFFF:
            continue
        pair = canonical_decomposition_pair(chr(cp))
        if pair and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            pairs.append((pair[0], pair[1], cp))
    pairs.sort()
    return pairs


def hex_cp(cp):
    return f"0x{cp:X}"


def emit_rows(rows, per_line):
    lines = []
    for i in range(0, len(rows), per_line):
        lines.append("    " + " ".join(rows[i : i + per_line]))
    return "\n".join(lines)


def render(version):
    flags = flag_ranges()
    lowers = lowercase_mappings()
    cccs = combining_class_ranges()
    decompositions = full_decompositions()
    composites = primary_composites()

    decomposition_data = []
    decomposition_rows = []
    for cp, parts in decompositions:
        decomposition_rows.append(f"{{{hex_cp(cp)}, {len(decomposition_data)}, {len(parts)}}},")
        decomposition_data.extend(parts)
    if len(decomposition_data) > 0xFFFF:
        sys.exit("decomposition data no longer fits 16-bit offsets")

    out = []
    out.append("// GENERATED by scripts/gen_unicode_tables.py from Python's unicodedata; do not edit.")
    out.append(f"// Unicode {version} (Python {sys.version_info.major}.{sys.version_info.minor}).")
    out.append('#include "tokenizer/unicode_tables.h"')
    out.append("")
    out.append("namespace sdrt::unicode {")
    out.append("")
    out.append(f'const char* const kUnicodeVersion = "{version}";')
    out.append("")
    out.append(f"const FlagRange kFlagRanges[] = {{")
    out.append(emit_rows([f"{{{hex_cp(cp)}, 0x{f:03X}}}," for cp, f in flags], 6))
    out.append("};")
    out.append(f"const size_t kFlagRangeCount = {len(flags)};")
    out.append("")
    out.append("const LowercaseMapping kLowercaseMappings[] = {")
    out.append(emit_rows([f"{{{hex_cp(cp)}, {{{hex_cp(a)}, {hex_cp(b)}}}}}," for cp, a, b in lowers], 4))
    out.append("};")
    out.append(f"const size_t kLowercaseMappingCount = {len(lowers)};")
    out.append("")
    out.append("const CombiningClassRange kCombiningClassRanges[] = {")
    out.append(emit_rows([f"{{{hex_cp(a)}, {hex_cp(b)}, {c}}}," for a, b, c in cccs], 4))
    out.append("};")
    out.append(f"const size_t kCombiningClassRangeCount = {len(cccs)};")
    out.append("")
    out.append("const char32_t kDecompositionData[] = {")
    out.append(emit_rows([f"{hex_cp(cp)}," for cp in decomposition_data], 10))
    out.append("};")
    out.append("const Decomposition kDecompositions[] = {")
    out.append(emit_rows(decomposition_rows, 4))
    out.append("};")
    out.append(f"const size_t kDecompositionCount = {len(decompositions)};")
    out.append("")
    out.append("const Composition kCompositions[] = {")
    out.append(emit_rows([f"{{{hex_cp(a)}, {hex_cp(b)}, {hex_cp(c)}}}," for a, b, c in composites], 4))
    out.append("};")
    out.append(f"const size_t kCompositionCount = {len(composites)};")
    out.append("")
    out.append("}  // namespace sdrt::unicode")
    out.append("")
    return "\n".join(out)


def main():
    default_output = os.path.join(os.path.dirname(__file__), "..", "src", "tokenizer", "unicode_tables.cpp")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=default_output)
    parser.add_argument("--allow-other-version", action="store_true")
    args = parser.parse_args()

    version = unicodedata.unidata_version
    if version != EXPECTED_UNICODE_VERSION and not args.allow_other_version:
        sys.exit(
            f"this Python has Unicode {version}; the reference tokenizer used {EXPECTED_UNICODE_VERSION} "
            "(Python 3.11). Use a Python 3.11 or pass --allow-other-version."
        )
    with open(args.output, "w", encoding="ascii") as f:
        f.write(render(version))
    print(f"wrote {os.path.normpath(args.output)} (Unicode {version})")


if __name__ == "__main__":
    main()
