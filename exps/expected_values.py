"""What a run of the miniature should give, and whether one did: expected ranges over seeds and thread counts.

    python exps/expected_values.py check EXPECTED.json EVAL_DIR [--psnr PSNR.json] [--setting ENV.json] [--out F.md]

    python exps/expected_values.py markdown EXPECTED.json      # the table the README shows

    python exps/expected_values.py merge A.json B.json [...] --out MERGED.json   # pool runs of several machines

``exps/miniature_stats.py`` writes EXPECTED.json from the miniature's runs (every thread count x seed): per arm and
probe the mean, the standard deviation and the 95 % prediction range of one more run,
mean +- t(0.975, n - 1) x std x sqrt(1 + 1/n), the range into which a run made like these falls 19 times in 20; and
the denoiser's PSNR range, the values measured at each thread count widened by PSNR_TOLERANCE_DB. ``check`` prints a
run's numbers (the result files below EVAL_DIR, each arm's last checkpoint) beside them, marks each one outside
its range with ``!`` and says how many are; it exits 0 either way (a run outside the range is a warning, not an
error) and says so when EXPECTED.json does not exist (no expected values for that profile or noise setting).
``merge`` pools the runs of several such files (made on other processors, say) into one: the pooled mean and
standard deviation are exact (from each file's count, mean and std), the range is that of one more run of the pool.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

from exps.report import collect_results, final_scores
from utils.atomic import atomic_write_json, atomic_write_text
from utils.environment import describe_text, read
from utils.statistics import interval_of, t_interval  # noqa: F401  (t_interval: imported from here too)

METRICS = {"linear": "linear top-1 (%)", "knn": "k-NN top-1 (%)"}
# the quick start's denoiser recipe was chosen to vary by at most this much over thread counts and seeds
# (bench/n2n_stability.py), so a PSNR further than this from every measured value is not the recipe's variation
PSNR_TOLERANCE_DB = 0.2


def pooled(blocks: list[dict]) -> dict[str, Optional[float]]:
    """One prediction block (as ``t_interval(..., of="value")``) over the values behind ``blocks`` (each with its
    ``n``, ``mean`` and ``std``): the pooled mean and std equal those of the values taken together."""
    n = sum(block["n"] for block in blocks)
    mean = sum(block["n"] * block["mean"] for block in blocks) / n
    squares = sum((block["n"] - 1) * (block["std"] or 0.0) ** 2 + block["n"] * (block["mean"] - mean) ** 2
                  for block in blocks)
    return interval_of(n, mean, math.sqrt(squares / (n - 1)) if n > 1 else None, of="value")


def _source(expected: dict) -> str:
    """A label for one file's runs in a merge: the processors they ran on."""
    cpus = sorted({str(setting.get("cpu", "unknown CPU")) for setting in expected.get("settings", [])})
    return " + ".join(cpus) or "unknown CPU"


def merge(expecteds: list[dict]) -> dict[str, Any]:
    """One EXPECTED.json's content from several: the runs pooled per arm and probe, run and PSNR labels prefixed
    with their processors, every setting kept, the PSNR range over every measured value."""
    sources = [_source(expected) for expected in expecteds]
    if len(set(sources)) < len(sources):
        raise ValueError(f"two files come from the same processors ({', '.join(sources)}): merge a machine's runs "
                         "in exps/miniature_stats.py, where each run counts once")
    merged: dict[str, Any] = {"runs": [f"{source}: {run}" for source, expected in zip(sources, expecteds)
                                       for run in expected["runs"]],
                              "settings": [setting for expected in expecteds for setting in expected["settings"]],
                              "arms": {}}
    for method in dict.fromkeys(method for expected in expecteds for method in expected["arms"]):
        arms = [expected["arms"][method] for expected in expecteds if method in expected["arms"]]
        merged["arms"][method] = {"name": arms[0]["name"]}
        for metric in METRICS:
            blocks = [arm[metric] for arm in arms if metric in arm]
            if blocks:
                merged["arms"][method][metric] = pooled(blocks)
    psnrs = {f"{source}: {label}": value for source, expected in zip(sources, expecteds)
             for label, value in expected.get("denoiser_psnr", {}).get("values", {}).items()}
    if psnrs:
        merged["denoiser_psnr"] = _psnr_band(psnrs)
    return merged


def _psnr_band(psnrs: dict[str, float]) -> dict[str, Any]:
    return {"values": psnrs, "low": min(psnrs.values()) - PSNR_TOLERANCE_DB,
            "high": max(psnrs.values()) + PSNR_TOLERANCE_DB}


def build_expected(runs: dict[str, dict[str, dict[str, float]]], psnrs: dict[str, float],
                   settings: list[dict[str, Any]], names: dict[str, str]) -> dict[str, Any]:
    """EXPECTED.json's content from ``runs`` ({run label: {method: {metric: top-1}}}), the denoiser's PSNR per
    thread count (``psnrs``), the settings the runs were made under and the arms' display names."""
    arms: dict[str, dict] = {}
    for method, name in names.items():
        for metric in METRICS:
            values = [scores[method][metric] for scores in runs.values() if metric in scores.get(method, {})]
            if values:
                arms.setdefault(method, {"name": name})[metric] = t_interval(values, of="value")
    expected: dict[str, Any] = {"runs": sorted(runs), "settings": settings, "arms": arms}
    if psnrs:
        expected["denoiser_psnr"] = _psnr_band(psnrs)
    return expected


def _inside(value: float, block: dict) -> Optional[bool]:
    return None if block.get("low") is None else block["low"] <= value <= block["high"]


def _range(block: dict) -> str:
    return f"{block['mean']:.1f}" if block.get("low") is None else \
        f"{block['mean']:.1f} [{block['low']:.1f}, {block['high']:.1f}]"


def comparison(expected: dict, scores: dict[str, dict[str, float]], psnr: Optional[float]) -> tuple[str, int, int]:
    """A Markdown table of this run beside the expected ranges, and (values compared, values outside)."""
    lines = ["| | " + " | ".join(f"{label}: this run | expected" for label in METRICS.values()) + " |",
             "| --- |" + " --- | --- |" * len(METRICS)]
    compared = outside = 0
    for method, arm in expected["arms"].items():
        cells = []
        for metric in METRICS:
            block, value = arm.get(metric), scores.get(method, {}).get(metric)
            if block is None or value is None:
                cells += ["-", _range(block) if block else "-"]
                continue
            inside = _inside(value, block)
            compared += inside is not None
            outside += inside is False
            cells += [f"{value:.1f}{' !' if inside is False else ''}", _range(block)]
        lines.append(f"| {arm['name']} | " + " | ".join(cells) + " |")
    band = expected.get("denoiser_psnr")
    if band is not None and psnr is not None:
        inside = band["low"] <= psnr <= band["high"]
        compared, outside = compared + 1, outside + (not inside)
        lines += ["", f"Denoiser PSNR on val: this run {psnr:.2f} dB{' !' if not inside else ''}, expected "
                      f"{band['low']:.2f}-{band['high']:.2f} dB."]
    return "\n".join(lines) + "\n", compared, outside


def settings_text(settings: list[dict[str, Any]]) -> str:
    """The settings, one per line, as Markdown list items."""
    return "\n".join(f"- {describe_text(setting)}" for setting in settings)


def check(expected_path: Path, eval_dir: Path, psnr_path: Optional[Path], setting_path: Optional[Path],
          out: Optional[Path]) -> int:
    """The ``check`` command (see the module docstring)."""
    setting = f"This run's setting:\n{settings_text(read(setting_path)) if setting_path else '- not recorded'}\n"
    if not expected_path.is_file():
        text = f"No expected values for this setting ({expected_path} does not exist): nothing to compare with.\n"
    else:
        expected = json.loads(expected_path.read_text(encoding="utf-8"))
        scores = final_scores(collect_results([eval_dir]))
        psnr = json.loads(psnr_path.read_text())["denoised_psnr"] if psnr_path and psnr_path.is_file() else None
        table, compared, outside = comparison(expected, scores, psnr)
        verdict = (f"all {compared} values inside the expected ranges" if not outside else
                   f"{outside} of {compared} values outside the expected ranges (marked !): this run is not like "
                   "the ones the ranges were measured on; compare its setting with theirs")
        text = (f"{table}\n{verdict}.\n\nExpected values measured over {len(expected['runs'])} runs (seeds and "
                f"settings; each run named in {expected_path}) with:\n{settings_text(expected['settings'])}\n")
    text += f"\n{setting}"
    if out is not None:
        atomic_write_text(out, text)
    else:
        print(text, end="")
    return 0


def markdown(expected: dict) -> str:
    """The expected ranges as the README shows them."""
    lines = ["| method | " + " | ".join(f"{label}: mean [95 % range]" for label in METRICS.values()) + " |",
             "| --- |" + " --- |" * len(METRICS)]
    for arm in expected["arms"].values():
        lines.append(f"| {arm['name']} | " + " | ".join(_range(arm[m]) if m in arm else "-" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="compare a run with the expected values")
    checking.add_argument("expected", type=Path)
    checking.add_argument("eval_dir", type=Path, help="the run's result files (searched recursively)")
    checking.add_argument("--psnr", type=Path, default=None, help="the denoiser's evaluate_psnr.py JSON")
    checking.add_argument("--setting", type=Path, default=None, help="the run's environment.json")
    checking.add_argument("--out", type=Path, default=None, help="write the comparison here (Markdown), not on stdout")
    showing = commands.add_parser("markdown", help="print the expected values as a Markdown table")
    showing.add_argument("expected", type=Path)
    merging = commands.add_parser("merge", help="pool several files' runs (other processors) into one")
    merging.add_argument("inputs", type=Path, nargs="+", help="EXPECTED.json files, one per processor")
    merging.add_argument("--out", type=Path, required=True, help="the merged EXPECTED.json")
    args = parser.parse_args(argv)
    if args.command == "merge":
        try:
            merged = merge([json.loads(path.read_text(encoding="utf-8")) for path in args.inputs])
        except (ValueError, KeyError) as error:
            print(f"error: {', '.join(map(str, args.inputs))}: {error}", file=sys.stderr)
            return 2
        atomic_write_json(args.out, merged)
        print(markdown(merged), end="")
        return 0
    if args.command == "markdown":
        print(markdown(json.loads(args.expected.read_text(encoding="utf-8"))), end="")
        return 0
    return check(args.expected, args.eval_dir, args.psnr, args.setting, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
