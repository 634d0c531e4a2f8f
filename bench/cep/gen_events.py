#!/usr/bin/env python3
"""Realistic payment/login event stream for CEP benchmarks, as NDJSON on stdout.

    gen_events.py --events 1000000 --keys 100000 --rate 20000 [--late 0.01] [--seed 42] > events.ndjson
    gen_events.py --csv ...     # the same rows as CSV (user_id,action,merchant,amount,country,ts) for Flink

Each event: {"user_id": "u123", "action": "pay", "merchant": "m17", "amount": 412.5,
"country": "FR", "ts": "2026-01-01T00:00:03.250Z"}. `--rate` is events per second of event
time; `--late` is the fraction of events shifted up to 500 ms into the past (out of order).
Stream definition for weir:

    CREATE STREAM events (user_id STRING, action STRING, merchant STRING, amount FLOAT,
                          country STRING, ts TIMESTAMP)
      WITH (event_time = 'ts', max_delay = '1 second');

The actions mix logins (login_fail, login_ok) and payments (pay x3, refund, pw_change,
view), as the matcher benchmark (matcher/benches/cep_throughput.rs) does.
"""
import argparse, datetime, json, random, sys

ACTIONS = ["login_fail", "login_ok", "pay", "pay", "pay", "refund", "pw_change", "view"]
COUNTRIES = ["US", "FR", "DE", "BR", "IN", "NG"]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--late", type=float, default=0.01)
    ap.add_argument("--merchants", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--csv", action="store_true")
    a = ap.parse_args()
    r = random.Random(a.seed)
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    out = sys.stdout
    for i in range(a.events):
        ms = i * 1000 // a.rate
        if r.random() < a.late:
            ms = max(0, ms - r.randrange(500))
        t = t0 + datetime.timedelta(milliseconds=ms)
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        e = {"user_id": f"u{r.randrange(a.keys)}", "action": r.choice(ACTIONS),
             "merchant": f"m{r.randrange(a.merchants)}", "amount": r.randrange(100_000) / 100,
             "country": r.choice(COUNTRIES), "ts": ts}
        if a.csv:
            out.write(",".join([e["user_id"], e["action"], e["merchant"], str(e["amount"]), e["country"],
                                ts.replace("T", " ").rstrip("Z")]) + "\n")
        else:
            out.write(json.dumps(e) + "\n")

if __name__ == "__main__":
    main()
