"""Memory of ``desktop-ft data inspect`` and ``desktop-ft train`` on a big JSONL against 1% of it.

Reading a dataset must not grow memory with the file: rows are streamed into an on-disk Arrow
store and the trainer's examples are memory-mapped (``desktop_ft/core/datasets/_store.py``). This
writes a JSONL of ``--gb`` GB of chats of mixed lengths for inspection, one of chats of a single
length for training (so every batch has the same shape: see ``main``), and a file of 1% of the rows
of each, then runs, each in a fresh child process with an empty cache:

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
- **peak anonymous PSS with its workers** (sampled once a second): the process and the tokenising
  processes TRL's map starts on a big file, shared pages counted once; their whole PSS is printed
  too, most of it pages of the memory-mapped tokenised files (page cache, dropped first).

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


def write_jsonl(path: Path, target_bytes: int, seed: int = 0, *, even: bool = False) -> int:
    """Chats from a few words to a few hundred, each row distinct; returns the number of rows.

    ``even``: every answer 90 words and every question 17 (the mixed rows' means), so each row
    tokenises to about the same length and every batch has the same shape.
    """
    rng = random.Random(seed)
    rows = 0
    size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < target_bytes:
            n = 90 if even else rng.choice((3, 8, 20, 60, 150, 300))
            k = 17 if even else rng.randint(4, 30)
            question = f"Question {rows}: " + " ".join(rng.choices(WORDS, k=k))
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


def _tree_pss_kib(pid: int) -> tuple[int, int]:
    """Proportional set size of ``pid`` and every process under it (TRL's tokenising workers), and
    its anonymous part: pages they share are counted once, split among them. The rest is pages of
    files they map (the tokenised Arrow files), which the kernel drops first when memory is short."""
    import psutil

    total = anon = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                    elif line.startswith("Pss_Anon:"):
                        anon += int(line.split()[1])
        except OSError:
            pass
    return total, anon


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; its peak RSS (ru_maxrss), peak anonymous RSS, peak PSS of it and its worker
    processes together, and wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = peak_tree = peak_tree_anon = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_anon, peak_tree, peak_tree_anon
        ticks = 0
        while not done.is_set():
            peak_anon = max(peak_anon, _anon_kib(proc.pid))
            if ticks % 10 == 0:  # once a second: reading smaps_rollup of big processes costs CPU
                pss, pss_anon = _tree_pss_kib(proc.pid)
                peak_tree, peak_tree_anon = max(peak_tree, pss), max(peak_tree_anon, pss_anon)
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
            # sampled once a second, it can miss the run's own short peaks, which it includes
            "tree_anon": max(peak_tree_anon, peak_anon) * 1024, "seconds": time.perf_counter() - start,
            "stdout": "".join(out_chunks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the big file (default 2)")
    parser.add_argument("--train-gb", type=float, default=None,
                        help="size of the file trained on, rows of one length (default: --gb; TRL tokenises every "
                             "row before the first step: about 30 minutes for 2 GB on 2 cores)")
    parser.add_argument("--skip-train", action="store_true", help="only data inspect")
    parser.add_argument("--skip-inspect", action="store_true", help="only train")
    parser.add_argument("--model", default="default", help="model for inspect's tokenizer and for training")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
        tmp_path = Path(tmp)
        print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
        files: dict[str, tuple[Path, Path]] = {}
        rows: dict[str, int] = {}
        if not args.skip_inspect:
            big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
            t0 = time.perf_counter()
            rows["data inspect"] = write_jsonl(big, int(args.gb * GiB))
            head(big, small, max(100, rows["data inspect"] // 100))
            files["data inspect"] = (small, big)
            print(f"big.jsonl (mixed lengths): {big.stat().st_size / GiB:.2f} GiB, {rows['data inspect']} rows "
                  f"(written in {time.perf_counter() - t0:.0f} s); small.jsonl: 1% of it", flush=True)
        if not args.skip_train:
            # Training on rows of one length: a step's activations grow with the tokens of its batch,
            # so on mixed rows the peak is whichever long batch the sampler happens to draw (two seeds
            # on the same 2,567 rows peaked 1.3 GiB apart). With every batch the same shape, the
            # difference between the two runs is what the size of the file costs, nothing else.
            train_gb = args.gb if args.train_gb is None else min(args.train_gb, args.gb)
            train_big, train_small = tmp_path / "train-big.jsonl", tmp_path / "train-small.jsonl"
            rows["train"] = write_jsonl(train_big, int(train_gb * GiB), even=True)
            head(train_big, train_small, max(100, rows["train"] // 100))
            files["train"] = (train_small, train_big)
            print(f"train-big.jsonl (rows of one length): {train_big.stat().st_size / GiB:.2f} GiB, {rows['train']} "
                  f"rows; train-small.jsonl: 1% of it", flush=True)
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

                    # converted once into the default cache (a no-op when it is there already)
                    target = embedded.convert_gguf(embedded.embedded_gguf_path())
                    cache = Path(env["DESKTOP_FT_CACHE"])
                    (cache / "models").mkdir(parents=True, exist_ok=True)
                    link = cache / "models" / target.name
                    if not link.exists():
                        link.symlink_to(target)
                figures[label] = measure(make(path), env)
                f = figures[label]
                print(f"  {name:12s} {label:>3s}: {f['seconds']:6.0f} s  peak RSS {f['rss'] / GiB:5.2f} GiB  "
                      f"peak anonymous {f['anon'] / GiB:5.2f} GiB  with its workers: anonymous "
                      f"{f['tree_anon'] / GiB:5.2f} GiB, PSS {f['tree_pss'] / GiB:5.2f} GiB", flush=True)
            extra = {k: figures["all"][k] - figures["1%"][k] for k in ("rss", "anon", "tree_anon", "tree_pss")}

            verdict = {k: "within" if v <= TARGET_EXTRA else "OVER" for k, v in extra.items()}
            print(f"  => {name}: the whole file costs {extra['rss'] / GiB:+.2f} GiB peak RSS ({verdict['rss']}), "
                  f"{extra['anon'] / GiB:+.2f} GiB anonymous ({verdict['anon']}), {extra['tree_anon'] / GiB:+.2f} GiB "
                  f"anonymous with its workers ({verdict['tree_anon']}) over 1% of it (target: at most "
                  f"+{TARGET_EXTRA / GiB:.1f}); PSS with its workers {extra['tree_pss'] / GiB:+.2f} GiB, "
                  "mostly pages of the tokenised files they map", flush=True)
            results[name] = {k: {m: v for m, v in f.items() if m != "stdout"} for k, f in figures.items()}
        out = ROOT / "benchmarks" / "results" / f"big_dataset_cpu_{'_'.join(n.split()[-1] for n in results)}.json"
        sizes = {name: {label: p.stat().st_size for label, p in zip(("1%", "all"), pair)}
                 for name, pair in files.items() if name in results}
        out.write_text(json.dumps({"gb": args.gb, "rows": {n: rows[n] for n in results}, "file_bytes": sizes,
                                   "results": results},
                                  indent=2) + "\n")
        print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
