#!/usr/bin/env python3
"""Generate a Lucene conformance case for weir's search (docs.tsv + queries.tsv).

Usage: gen_conformance.py OUT_DIR [SEED] [NDOCS]
Then: /work/shared/conformance/lucene_reference.sh OUT_DIR   (writes expected.tsv)

News-like documents over a small vocabulary with brand names, possessives, hyphenated
words, numbers, near-miss spellings (for fuzzy queries) and some accented words; queries
use prefix, leading/inner wildcards, fuzzy, field, NOT/-, regex, phrases and nesting.
Queries never mix OR with juxtaposition without parentheses (Lucene's classic parser has
no operator precedence there; weir's has NOT > AND > OR).
"""
import os
import random
import sys

out = sys.argv[1]
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 42
ndocs = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
rng = random.Random(seed)

common = """market shares price growth loss profit quarter report said weekly daily chief executive
board vote merger deal bank council city river flood storm season coach player win defeat
union strike plant factory supply chain battery phone car launch product recall lawsuit
investors rise fall election rescue news industries enterprises chocolate tiles umbrella
energy oil gas data cloud retail store customers analysts expect record sales""".split()
brands = ["acme", "globex", "initech", "hooli", "wonka", "stark", "wayne", "umbrella"]
typos = ["acmee", "acne", "akme", "globx", "glebex", "initek", "initec", "hooly", "wonkas"]
extras = ["acme's", "globex's", "wal-mart", "e-mail", "3.5", "2024", "1,000", "café",
          "cafe", "zürich", "zurich", "naïve", "recalls", "recalled", "recalling"]


def word():
    r = rng.random()
    if r < 0.12:
        return rng.choice(brands)
    if r < 0.16:
        return rng.choice(typos)
    if r < 0.24:
        return rng.choice(extras)
    # Zipf-ish over the common words
    i = min(int(rng.paretovariate(1.1)) - 1, len(common) - 1)
    return common[(i * 7) % len(common)] if rng.random() < 0.5 else rng.choice(common)


def sentence(n):
    ws = [word() for _ in range(n)]
    text = ""
    for i, w in enumerate(ws):
        if i == 0:
            w = w.capitalize()
        sep = rng.choice([" ", " ", " ", " ", ", ", "; ", " - "]) if i < len(ws) - 1 else "."
        text += w + sep
    return text


os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "docs.tsv"), "w") as f:
    for i in range(ndocs):
        title = " ".join(w.capitalize() for w in (word() for _ in range(rng.randint(2, 5))))
        body = " ".join(sentence(rng.randint(6, 18)) for _ in range(rng.randint(1, 4)))
        f.write(f"{i}\t{title}\t{body}\n")

queries = [
    ("p01", "recal*"), ("p02", "glob*"), ("p03", "*tech"), ("p04", "w?nka"),
    ("p05", "st*k"), ("p06", "ac?e*"), ("p07", "invest* AND NOT title:invest*"),
    ("f01", "acme~1"), ("f02", "globex~2"), ("f03", "initech~"), ("f04", "hooli~1 AND recall"),
    ("t01", "title:acme"), ("t02", "title:(storm OR flood)"), ("t03", 'title:"supply chain"'),
    ("t04", "title:glob* AND body:profit"),
    ("n01", "acme NOT recall"), ("n02", "acme AND NOT (recall OR lawsuit)"),
    ("n03", "(globex OR hooli) -merger -deal"), ("n04", '+wonka -"chocolate factory"'),
    ("r01", "/recall(s|ed)?/"), ("r02", "/[a-c]cme/"),
    ("b01", "(acme OR globex) AND (recall OR lawsuit) AND NOT title:storm"),
    ("b02", '"supply chain" OR "chain supply"'), ("b03", "acme's OR globex's"),
    ("b04", "3.5 AND growth"), ("b05", "(stark OR wayne) AND (industries OR enterprises)"),
    ("b06", '"chief executive" said -title:vote'), ("b07", "1,000 OR 2024"),
    ("a01", "café"), ("a02", "cafe"), ("a03", "zürich"), ("a04", "zurich"),
    ("h01", "wal-mart"), ("x01", '"acme recall"~3'),
]
with open(os.path.join(out, "queries.tsv"), "w") as f:
    for n, q in queries:
        f.write(f"{n}\t{q}\n")
