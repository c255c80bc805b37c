#!/usr/bin/env python3
"""HitRate@1 of `tmf eval --predictions` files split by "target in history" and "new item".

Usage: python3 Scripts/split_predictions.py DATASET_DIR FILE.jsonl [FILE.jsonl ...]

A test example's history is every event of its user before the user's last target-behavior
event (DESIGN.md section 4: events ordered by timestamp, ties in file order); the target is
"in history" when its item is among them. Ranking files (`--rank`) count the top-ranked
candidate, generative files the answer's `correct` flag over every example (HitRate@1(all): an
invalid answer counts as wrong). Standard library only.
"""
import csv, json, sys
from collections import defaultdict

def in_history_by_user(folder):
    target = "purchase"
    try:
        with open(f"{folder}/dataset.json") as f:
            target = json.load(f).get("target", target)
    except FileNotFoundError:
        pass
    events = defaultdict(list)
    with open(f"{folder}/interactions.csv", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            events[row["user_id"]].append((float(row["timestamp"]), i, row["item_id"], row["behavior"]))
    out = {}
    for user, evs in events.items():
        evs.sort()
        last = max((k for k, e in enumerate(evs) if e[3] == target), default=None)
        if last is not None:
            out[user] = (evs[last][2], {e[2] for e in evs[:last]})
    return out

def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    users = in_history_by_user(sys.argv[1])
    for path in sys.argv[2:]:
        counts = {True: [0, 0], False: [0, 0]}
        with open(path) as f:
            for line in f:
                p = json.loads(line)
                item, seen = users[p["user"]]
                if item != p["target"]:
                    sys.exit(f"{path}: user {p['user']}'s target {p['target']} is not their last one ({item}); pass the test split's predictions")
                right = p["ranking"][0] == p["target"] if "ranking" in p else bool(p["correct"])
                c = counts[p["target"] in seen]
                c[0] += int(right)
                c[1] += 1
        parts = [f"{name} {c[0] / max(1, c[1]):.3f} ({c[1]})" for name, c in (("in history", counts[True]), ("new item", counts[False]))]
        print(f"{path}: " + ", ".join(parts))

if __name__ == "__main__":
    main()
