#!/usr/bin/env python3
"""Retrieval recall@k on a SQuAD-format QA set (CMRC 2018) through the `lore` CLI.

Each passage becomes one text file in a fresh data dir; every question is searched with
`lore search --batch - --json`; a hit is a result from the passage that holds the answer.
Usage: scripts/eval_cmrc.py [--qa FILE] [--modes sparse,dense,hybrid] [--sizes 300] [--overlap 30]
"""
import argparse, json, os, subprocess, sys, tempfile, time

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qa", default="../shared/data/qa/cmrc2018_trial.json")
    ap.add_argument("--lore", default=os.path.expanduser(os.environ.get("CARGO_TARGET_DIR", "~/.cache/lore/target")) + "/release/lore")
    ap.add_argument("--modes", default="sparse,dense,hybrid")
    ap.add_argument("--sizes", default="300")
    ap.add_argument("--overlap", type=float, default=0.1, help="overlap as a fraction of the size")
    ap.add_argument("--k", default="1,5,10")
    args = ap.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    data = json.load(open(args.qa, encoding="utf-8"))["data"]
    passages, questions = [], []
    for article in data:
        for para in article["paragraphs"]:
            pid = f"p{len(passages):04d}"
            passages.append((pid, para["context"]))
            for qa in para["qas"]:
                questions.append((qa["question"].replace("\n", " "), pid))
    print(f"{len(passages)} passages, {len(questions)} questions", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        docs = os.path.join(tmp, "docs")
        os.makedirs(docs)
        for pid, text in passages:
            open(os.path.join(docs, pid + ".txt"), "w", encoding="utf-8").write(text)
        for size in [int(s) for s in args.sizes.split(",")]:
            overlap = int(size * args.overlap)
            env = dict(os.environ, LORE_STORE__DATA_DIR=os.path.join(tmp, f"data{size}"),
                       LORE_INGEST__CHUNK_SIZE=str(size), LORE_INGEST__CHUNK_OVERLAP=str(overlap))
            t = time.time()
            subprocess.run([args.lore, "ingest", docs], env=env, check=True, stdout=subprocess.DEVNULL)
            ingest_s = time.time() - t
            for mode in args.modes.split(","):
                t = time.time()
                out = subprocess.run([args.lore, "search", "--batch", "-", "--json", "-k", str(max(ks)), "--mode", mode],
                                     env=env, input="\n".join(q for q, _ in questions), capture_output=True,
                                     text=True, check=True).stdout
                search_s = time.time() - t
                ranks = {}
                for line in out.splitlines():
                    r = json.loads(line)
                    pid = os.path.splitext(os.path.basename(r["source"]))[0]
                    if pid == questions[r["query"]][1] and r["query"] not in ranks:
                        ranks[r["query"]] = r["rank"]
                recall = {k: sum(1 for q in range(len(questions)) if ranks.get(q, 99) <= k) / len(questions) for k in ks}
                mrr = sum(1 / ranks[q] for q in ranks) / len(questions)
                rows.append((size, overlap, mode, recall, mrr, ingest_s, search_s))
                print(f"size {size:>4} overlap {overlap:>3} {mode:<7} " +
                      " ".join(f"R@{k}={recall[k]:.3f}" for k in ks) + f" MRR={mrr:.3f}  ingest {ingest_s:.0f}s search {search_s:.0f}s", flush=True)

if __name__ == "__main__":
    main()
