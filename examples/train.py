#!/usr/bin/env python3
"""A tiny, deterministic "training" job for the repro demo.

Fits y = w*x + b by gradient descent on the CSV files under --data and writes the model
as JSON to --out. Same data + same arguments = the same bytes, so a re-run can be checked.
"""
import argparse
import json
import pathlib


def load(data_dir):
    points = []
    for f in sorted(pathlib.Path(data_dir).glob("*.csv")):
        for line in f.read_text().splitlines()[1:]:
            x, y = line.split(",")
            points.append((float(x), float(y)))
    return points


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pts = load(args.data)
    w, b = 0.0, 0.0
    for epoch in range(args.epochs):
        gw = sum((w * x + b - y) * x for x, y in pts) / len(pts)
        gb = sum((w * x + b - y) for x, y in pts) / len(pts)
        w -= args.lr * gw
        b -= args.lr * gb
        if epoch % 50 == 0:
            loss = sum((w * x + b - y) ** 2 for x, y in pts) / len(pts)
            print(f"epoch {epoch:4d}  loss {loss:.6f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"w": round(w, 6), "b": round(b, 6), "n": len(pts)}, sort_keys=True) + "\n")
    print(f"wrote {out}: w={w:.4f} b={b:.4f}")


if __name__ == "__main__":
    main()
