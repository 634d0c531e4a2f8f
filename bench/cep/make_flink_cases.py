#!/usr/bin/env python3
"""Generate CEP conformance cases and their Flink reference answers.

For each (seed, key count) it writes a case directory under
matcher/tests/data/conformance/gen-<seed>-k<keys>/ with stream.json, events.ndjson and
rules.json, then runs /work/shared/conformance/flink_reference.py (Flink 2.3, batch
MATCH_RECOGNIZE) to produce expected.ndjson and rules.weir.

Rules stay inside Flink's limits and avoid where Flink departs from SQL preferment: Flink
emits the match that completes first, so a greedy optional/loop variable whose condition
overlaps the next variable's (`B? C` with a row satisfying both) gives the shorter match
in Flink but the longer (preferred) one in SQL and weir; conditions here are disjoint.
Flink also never decides partial matches still open at the end of a batch input, and with
an AFTER MATCH strategy it holds back later matches behind an earlier open one, so a rule
whose partial matches can stay open forever loses most of its matches in Flink; such rules
get a WITHIN here. Also: no alternation, no groups, no repeated variable, no
greedy quantifier as the last element, no PREV, no AVG over INT, no reserved words; event
times strictly increase (Flink orders ties arbitrarily) and arrive in order. Event times lie on
a 7 ms grid so that no two rows are exactly a WITHIN length apart: Flink 2.3 treats WITHIN as
exclusive (last - first < d) although its documentation's example includes a match of exactly
1 hour; weir follows the language contract (last - first <= d).

Usage: make_flink_cases.py [--python ~/.cache/weir-flink-venv/bin/python] [--cases N]
"""
import argparse, json, os, random, subprocess, sys, datetime

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "matcher", "tests", "data", "conformance")
REF = "/work/shared/conformance/flink_reference.py"

STREAM = {"name": "ev", "columns": [["k", "STRING"], ["act", "STRING"], ["amount", "INT"],
                                    ["price", "DOUBLE"], ["ts", "TIMESTAMP(3)"]], "time": "ts"}

def mr(measures, after, pattern, defines, within=None):
    w = f" WITHIN INTERVAL '{within}' SECOND" if within else ""
    return (f"SELECT * FROM ev MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts MEASURES {measures} "
            f"ONE ROW PER MATCH AFTER MATCH {after} PATTERN ({pattern}){w} DEFINE {defines})")

def rule_pool(r):
    a, b, c = r.sample(["open", "click", "buy", "close", "fail"], 3)
    n = r.randint(20, 80)
    return {
        "strict": mr("A.amount AS a_amt, COUNT(B.amount) AS nb, C.amount AS c_amt", "SKIP PAST LAST ROW",
                     "A B+ C", f"A AS A.act = '{a}', B AS B.act = '{b}', C AS C.act = '{c}'"),
        "gap_within": mr("A.amount AS a_amt, B.amount AS b_amt, B.ts AS b_ts", "SKIP PAST LAST ROW",
                         "A X*? B", f"A AS A.act = '{a}', B AS B.act = '{b}' AND B.amount > A.amount",
                         within=r.choice([5, 20, 60])),
        "counted_next": mr("FIRST(A.amount) AS first_a, LAST(A.amount) AS last_a, B.amount AS b_amt",
                           "SKIP TO NEXT ROW", "A{2,3} B", f"A AS A.act = '{a}', B AS B.act <> '{a}'"),
        "optional_last": mr("A.amount AS a_amt, COUNT(B.amount) AS nb, C.amount AS c_amt", "SKIP TO LAST C",
                            "A B? C", f"A AS A.act = '{a}', B AS B.amount < {n} AND B.act <> '{c}', C AS C.act = '{c}'"),
        "agg_define": mr("SUM(B.amount) AS total, COUNT(B.amount) AS nb, MAX(B.amount) AS mx, C.amount AS c_amt",
                         "SKIP PAST LAST ROW", "A B*? C",
                         f"A AS A.act = '{a}', B AS B.act <> '{c}', C AS C.act = '{c}' AND SUM(B.amount) > {n}"),
        "rising": mr("FIRST(U.amount) AS lo, LAST(U.amount) AS hi, COUNT(U.amount) AS n", "SKIP PAST LAST ROW",
                     "U{3,} D", "U AS LAST(U.amount, 1) IS NULL OR U.amount > LAST(U.amount, 1), "
                                "D AS D.amount <= LAST(U.amount)"),
        "nav_first": mr("A.amount AS a_amt, MIN(B.price) AS min_p, C.price AS c_p", "SKIP TO FIRST C",
                        "A B+? C", f"A AS A.act = '{a}', B AS B.price > 0, C AS C.price > FIRST(B.price) * 1.5",
                        within=r.choice([10, 30])),
        "reluctant_plus": mr("COUNT(A.amount) AS na, B.amount AS b_amt", "SKIP PAST LAST ROW",
                             "A+? B", f"A AS A.amount < {n}, B AS B.amount >= {n} AND B.act = '{b}'"),
    }

def make_case(seed, keys, n_events):
    r = random.Random(seed)
    name = f"gen-{seed}-k{keys}"
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    t = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
    with open(os.path.join(d, "events.ndjson"), "w") as f:
        for _ in range(n_events):
            t += datetime.timedelta(milliseconds=7 * r.randint(1, 130))
            e = {"k": f"k{r.randrange(keys)}", "act": r.choice(["open", "click", "buy", "close", "fail"]),
                 "amount": r.randint(1, 100), "price": round(r.uniform(1, 50), 2),
                 "ts": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"}
            f.write(json.dumps(e) + "\n")
    json.dump(STREAM, open(os.path.join(d, "stream.json"), "w"), indent=1)
    json.dump(rule_pool(r), open(os.path.join(d, "rules.json"), "w"), indent=1)
    return d

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.path.expanduser("~/.cache/weir-flink-venv/bin/python"))
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--only", type=int, nargs="*", help="seeds to (re)generate")
    args = ap.parse_args()
    plan = [(11, 3, 1500), (12, 20, 3000), (13, 1, 800), (14, 50, 4000), (15, 7, 2000), (16, 2, 1200),
            (17, 10, 2500), (18, 100, 5000), (19, 4, 1800), (20, 30, 3500)]
    ap_seeds = [s for s in plan if args.only is None or s[0] in args.only]
    for seed, keys, n in ap_seeds[: args.cases]:
        d = make_case(seed, keys, n)
        # run in a hidden directory, move into place when Flink is done (tests skip dot-dirs
        # and directories without expected.ndjson)
        hidden = os.path.join(OUT, "." + os.path.basename(d))
        if os.path.exists(hidden):
            subprocess.run(["rm", "-rf", hidden], check=True)
        os.rename(d, hidden)
        print(f"{d}: running Flink", flush=True)
        subprocess.run([args.python, REF, hidden], check=True)
        os.rename(hidden, d)

if __name__ == "__main__":
    sys.exit(main())
