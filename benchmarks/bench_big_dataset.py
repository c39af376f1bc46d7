"""Memory of ``desktop-ft data inspect`` and ``desktop-ft train`` on a big JSONL against 1% of it.

Reading a dataset must not grow memory with the file: rows are streamed into an on-disk Arrow
store and the trainer's examples are memory-mapped (``desktop_ft/core/datasets/_store.py``). This
writes a JSONL of ``--gb`` GB of chats of mixed lengths (and a file of 1% of its rows), then runs,
each in a fresh child process with an empty cache:

  1. ``desktop-ft data inspect FILE --json`` (format, every row checked, duplicates, token lengths
     on inspection's seeded sample, with the built-in model's tokenizer), and
  2. ``desktop-ft train --data FILE --max-steps 2`` (LoRA on the built-in model: the whole file
     read, split, written as examples and tokenised by TRL, then two steps).

For each it prints the peak resident memory of the big run, of the 1% run, and the difference,
against the target (the difference at most 1.5 GB). Two figures, because they mean different things:

- **peak RSS** (``wait4``'s ``ru_maxrss``): everything resident, including the pages of
  memory-mapped files the process has read (the kernel drops those first when memory is short);
- **peak anonymous RSS** (``RssAnon`` sampled every 0.1 s): memory only the process holds, which
  is what grows when rows are kept in Python lists;
- **peak PSS with its workers** (sampled): the process and the tokenising processes TRL's map
  starts on a big file, shared pages counted once.

Run:  python benchmarks/bench_big_dataset.py              # 2 GB
      python benchmarks/bench_big_dataset.py --gb 0.2 --skip-train
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GiB = 1024 ** 3
TARGET_EXTRA = 1.5 * GiB

WORDS = ("apple river stone cloud lamp paper garden window music silver orange bridge candle forest pencil "
         "rocket tiger violet winter yellow because however answer question simple careful").split()


def write_jsonl(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Chats from a few words to a few hundred, each row distinct; returns the number of rows."""
    rng = random.Random(seed)
    rows = 0
    size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < target_bytes:
            n = rng.choice((3, 8, 20, 60, 150, 300))
            question = f"Question {rows}: " + " ".join(rng.choices(WORDS, k=rng.randint(4, 30)))
            answer = " ".join(rng.choices(WORDS, k=n)) + "."
            line = json.dumps({"messages": [{"role": "user", "content": question},
                                            {"role": "assistant", "content": answer}]}) + "\n"
            f.write(line)
            size += len(line)
            rows += 1
    return rows


def head(src: Path, dst: Path, rows: int) -> None:
    with src.open("rb") as f, dst.open("wb") as out:
        for _ in range(rows):
            out.write(f.readline())


def _anon_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` and every process under it (TRL's tokenising workers):
    pages they share are counted once, split among them."""
    import psutil

    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup", encoding="ascii") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
        except OSError:
            pass
    return total


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; its peak RSS (ru_maxrss), peak anonymous RSS, peak PSS of it and its worker
    processes together, and wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_anon, peak_tree
        ticks = 0
        while not done.is_set():
            peak_anon = max(peak_anon, _anon_kib(proc.pid))
            if ticks % 10 == 0:  # once a second: reading smaps_rollup of big processes costs CPU
                peak_tree = max(peak_tree, _tree_pss_kib(proc.pid))
            ticks += 1
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
               threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)]  # type: ignore[union-attr]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in readers:
        t.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(err_chunks)[-3000:]}")
    return {"rss": usage.ru_maxrss * 1024, "anon": peak_anon * 1024, "tree_pss": peak_tree * 1024,
            "seconds": time.perf_counter() - start, "stdout": "".join(out_chunks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the big file (default 2)")
    parser.add_argument("--train-gb", type=float, default=None,
                        help="size of the file trained on (default: --gb; TRL tokenises every row before the "
                             "first step, about 10 minutes per 50,000 chats on 2 cores)")
    parser.add_argument("--skip-train", action="store_true", help="only data inspect")
    parser.add_argument("--skip-inspect", action="store_true", help="only train")
    parser.add_argument("--model", default="default", help="model for inspect's tokenizer and for training")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
        tmp_path = Path(tmp)
        big = tmp_path / "big.jsonl"
        t0 = time.perf_counter()
        rows = write_jsonl(big, int(args.gb * GiB))
        small = tmp_path / "small.jsonl"
        head(big, small, max(100, rows // 100))
        print(f"big.jsonl: {big.stat().st_size / GiB:.2f} GiB, {rows} rows (written in "
              f"{time.perf_counter() - t0:.0f} s); small.jsonl: 1% of it ({max(100, rows // 100)} rows); "
              f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
        files = {"data inspect": (small, big)}
        if not args.skip_train:
            if args.train_gb is None or args.train_gb >= args.gb:
                files["train"] = (small, big)
            else:
                train_rows = max(100, int(rows * args.train_gb / args.gb))
                train_big, train_small = tmp_path / "train-big.jsonl", tmp_path / "train-small.jsonl"
                head(big, train_big, train_rows)
                head(big, train_small, max(100, train_rows // 100))
                files["train"] = (train_small, train_big)
                print(f"train-big.jsonl: {train_big.stat().st_size / GiB:.2f} GiB, {train_rows} rows; "
                      f"train-small.jsonl: 1% of it")
        cli = [sys.executable, "-c", "import sys; from desktop_ft.cli import main; sys.exit(main())"]
        jobs = [] if args.skip_inspect else [
            ("data inspect", lambda f: cli + ["data", "inspect", str(f), "--model", args.model, "--json"])]
        if not args.skip_train:
            jobs.append(("train", lambda f: cli + ["train", "--model", args.model, "--data", str(f),
                                                   "--max-steps", "2", "--output-dir",
                                                   str(tmp_path / f"run-{f.stem}")]))
        results = {}
        for name, make in jobs:
            figures = {}
            for label, path in zip(("1%", "all"), files[name]):
                env = dict(os.environ, DESKTOP_FT_CACHE=str(tmp_path / f"cache-{name}-{label}"),
                           DESKTOP_FT_RUNS=str(tmp_path / "runs"), HF_DATASETS_CACHE=str(tmp_path / "hf"))
                if args.model == "default":  # the converted built-in model is shared, not converted again
                    from desktop_ft.core import embedded

                    target = embedded.conversion_target(embedded.embedded_gguf_path())
                    cache = Path(env["DESKTOP_FT_CACHE"])
                    (cache / "models").mkdir(parents=True, exist_ok=True)
                    link = cache / "models" / target.name
                    if not link.exists():
                        link.symlink_to(target)
                figures[label] = measure(make(path), env)
                f = figures[label]
                print(f"  {name:12s} {label:>3s}: {f['seconds']:6.0f} s  peak RSS {f['rss'] / GiB:5.2f} GiB  "
                      f"peak anonymous {f['anon'] / GiB:5.2f} GiB  peak PSS with its workers "
                      f"{f['tree_pss'] / GiB:5.2f} GiB", flush=True)
            extra_rss = figures["all"]["rss"] - figures["1%"]["rss"]
            extra_anon = figures["all"]["anon"] - figures["1%"]["anon"]
            extra_tree = figures["all"]["tree_pss"] - figures["1%"]["tree_pss"]
            print(f"  => {name}: the whole file costs {extra_rss / GiB:+.2f} GiB peak RSS, {extra_anon / GiB:+.2f} GiB "
                  f"anonymous, {extra_tree / GiB:+.2f} GiB PSS with its workers over 1% of it (target: at most "
                  f"+{TARGET_EXTRA / GiB:.1f}) -> {'within' if extra_rss <= TARGET_EXTRA else 'OVER'} (RSS), "
                  f"{'within' if extra_anon <= TARGET_EXTRA else 'OVER'} (anonymous), "
                  f"{'within' if extra_tree <= TARGET_EXTRA else 'OVER'} (with workers)", flush=True)
            results[name] = {k: {m: v for m, v in f.items() if m != "stdout"} for k, f in figures.items()}
        out = ROOT / "benchmarks" / "results" / f"big_dataset_cpu_{'_'.join(n.split()[-1] for n in results)}.json"
        sizes = {name: {label: p.stat().st_size for label, p in zip(("1%", "all"), pair)}
                 for name, pair in files.items() if name in results}
        out.write_text(json.dumps({"gb": args.gb, "rows": rows, "file_bytes": sizes, "results": results},
                                  indent=2) + "\n")
        print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
