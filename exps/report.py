"""Turn evaluation result files into the paper's tables (Markdown + CSV) and accuracy-versus-epoch figures.

    python exps/report.py OUT_ROOT [OUT_ROOT ...] [--out outputs/report] [--skip-invalid]

Every ``*.json`` below the roots that declares the result schema is read (see ``dinov2/eval/results.py``).
Method, noise setting and epoch come from the files' fields, never from their names. Writes:

* ``linear_top1.{md,csv}``: methods x noise settings, top-1 (%) of the head selected on the held-out part of
  the training set, at each run's last evaluated checkpoint;
* ``linear_top1_paper_best.{md,csv}``: the paper-compatible number, the best head on val at the best
  checkpoint (optimistic: chosen on the test set);
* ``knn_top1.{md,csv}`` (when k-NN was run): top-1 at the last checkpoint for the largest k;
* ``ssl_methods.{md,csv}`` (when several SSL methods have results, as ``exps/table2.sh`` writes them): the paper's
  Table 2, per method and noise the linear top-1 on noisy data, with NC and with N2N;
* ``few_shot.{md,csv}`` (when ``python -m dinov2.eval.few_shot`` was run): per method and noise, few-shot k-NN and
  logistic regression top-1 (mean [95 % interval] over the draws) for each number of shots, and the regression on
  all the labels, at each run's last checkpoint;
* ``robustness.{md,csv}`` and ``robustness_curve.png`` (when ``python -m dinov2.eval.robustness`` was run): per method
  and noise, clean and per-family area of the logistic-regression / k-NN top-1, and accuracy against the PSNR of the
  val images, a panel per noise family and a line per method;
* ``retrieval.{md,csv}``: revisited Oxford/Paris Easy / Medium / Hard mAP per method, noise and checkpoint label;
* ``summary.{md,csv}``: per noise setting and method, the probe, k-NN and retrieval (Medium / Hard mAP) numbers
  side by side;
* ``linear_curve_<noise>.png``: top-1 versus epoch, one line per method;
* with ``--runs RUN_DIR ...`` (training run folders): ``training_health.{md,png}``, each run's loss, DINO target
  entropy, effective rank and online k-NN against the iteration, and the health alarm's verdicts
  (``exps/training_curves.py``);
* with ``--page TITLE``: ``index.md`` and ``index.html`` showing every table and figure of the folder
  (``exps/report_page.py``), plus ``--n2n-psnr`` (the denoiser's PSNR JSON) and ``--include`` (.md / .png files).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional

from dinov2.eval.results import ResultError, iter_result_files, load_result
from dinov2.eval.noise_curves import curves_by_family
from exps.report_page import check_page_inputs, write_page
from exps.training_curves import curves_markdown, plot_curves as plot_training_curves, read_curves
from utils.atomic import atomic_write_text, make_folder
from utils.cli import add_output_dir
from utils.figures import pyplot, save_png
from utils.noise import PAPER_NOISE_SETTINGS

METHOD_ORDER = ("dinov2", "n2n_dinov2", "nc", "nct")
MISSING = "-"


def collect_results(roots: Iterable[Path], skip_invalid: bool = False) -> list[dict]:
    """Every valid result below ``roots``; an invalid one raises (or is skipped with a warning)."""
    results = []
    for root in roots:
        if not Path(root).exists():
            raise FileNotFoundError(f"result root {root} does not exist")
        for path in iter_result_files(Path(root)):
            try:
                result = load_result(path)
            except ResultError as error:
                if not skip_invalid:
                    raise
                warnings.warn(f"skipping {error}")
                continue
            result["_path"] = str(path)
            results.append(result)
    return results


def _ordered(values: Iterable[str], preferred: Iterable[str]) -> list[str]:
    values = set(values)
    first = [v for v in preferred if v in values]
    return first + sorted(values - set(first))


def _label(value: Optional[str]) -> str:
    return value if value is not None else "unlabelled"


def _sort_key(result: dict) -> tuple:
    return (result["epoch"] if result["epoch"] is not None else -1.0,
            result["iteration"] if result["iteration"] is not None else -1, result["created"])


def linear_cells(results: list[dict]) -> dict[str, dict[tuple[str, str], float]]:
    """{table: {(method, noise): value}} for the linear-probe and k-NN tables."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for result in results:
        if result["protocol"] in ("linear", "knn"):
            groups[(_label(result["method"]), _label(result["noise"]), result["protocol"])].append(result)
    tables: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for (method, noise, protocol), group in groups.items():
        last = max(group, key=_sort_key)
        knn = last["results"] if protocol == "knn" else last["results"].get("knn")
        if protocol == "linear":
            tables["linear_top1"][(method, noise)] = last["results"]["final"]["top1"]
            tables["linear_top1_paper_best"][(method, noise)] = max(r["results"]["best_on_val"]["top1"] for r in group)
        if knn:
            largest_k = max(knn["k"], key=int)
            tables["knn_top1"].setdefault((method, noise), knn["k"][largest_k]["top1"])
    return tables


def final_scores(results: list[dict]) -> dict[str, dict[str, float]]:
    """{method: {"linear": top-1, "knn": top-1}} at each method's last evaluated checkpoint (the tables' cells)."""
    cells = linear_cells(results)
    scores: dict[str, dict[str, float]] = {}
    for metric, table in (("linear", "linear_top1"), ("knn", "knn_top1")):
        for (method, _noise), value in cells.get(table, {}).items():
            scores.setdefault(method, {})[metric] = float(value)
    return scores


def _format(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write_table(out: Path, name: str, title: str, header: list[str], rows: list[list[object]]) -> None:
    """``OUT/<name>.md`` (with a title line) and ``OUT/<name>.csv``."""
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_format(v) for v in row) + " |" for row in rows]
    atomic_write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_format(v) for v in row] for row in rows])
    atomic_write_text(out / f"{name}.csv", buffer.getvalue())


TITLES = {
    "linear_top1": "Linear probe top-1 (%), head selected on a held-out part of train, last checkpoint",
    "linear_top1_paper_best": "Linear probe top-1 (%), paper-compatible: best head on val at the best checkpoint "
                              "(optimistic)",
    "knn_top1": "k-NN top-1 (%), largest k, last checkpoint",
}


def write_linear_tables(results: list[dict], out: Path) -> list[str]:
    """The methods x noise tables; returns the names written."""
    written = []
    for name, cells in linear_cells(results).items():
        methods = _ordered({m for m, _ in cells}, METHOD_ORDER)
        noises = _ordered({n for _, n in cells}, ("identity",) + PAPER_NOISE_SETTINGS)
        rows = [[method] + [cells.get((method, noise), MISSING) for noise in noises] for method in methods]
        write_table(out, name, TITLES[name], ["method"] + noises, rows)
        written.append(name)
    return written


SSL_METHOD_ORDER = ("dinov2", "dino", "ibot", "simclr", "mocov3", "simsiam")
METHOD_TABLE_ARMS = (("noisy", "on noisy data"), ("nc", "w/ NC"), ("n2n", "N2N + method"))


def method_and_arm(label: str) -> Optional[tuple[str, str]]:
    """(SSL method, arm) of a result's method label: ``<method>`` (noisy), ``nc_<method>``, ``n2n_<method>``;
    DINOv2's NC arm is labelled ``nc``; NCT runs (``nct``) are not an arm of the methods table (None)."""
    if label == "nc":
        return "dinov2", "nc"
    if label.startswith("nct"):
        return None
    for prefix, arm in (("n2n_", "n2n"), ("nc_", "nc")):
        if label.startswith(prefix):
            return label[len(prefix):], arm
    return label, "noisy"


def write_method_table(results: list[dict], out: Path) -> bool:
    """``ssl_methods.{md,csv}``, the paper's Table 2: rows (SSL method, noise), columns on noisy data / w/ NC /
    N2N + method, linear top-1 at the last checkpoint. Written when more than one SSL method has results."""
    cells: dict[tuple[str, str, str], float] = {}
    for (label, noise), top1 in linear_cells(results)["linear_top1"].items():
        found = method_and_arm(label)
        if found is not None:
            cells[(found[0], noise, found[1])] = top1
    methods = _ordered({method for method, _, _ in cells}, SSL_METHOD_ORDER)
    if len(methods) < 2:
        return False
    noises = _ordered({noise for _, noise, _ in cells}, ("identity",) + PAPER_NOISE_SETTINGS)
    rows = [[method, noise] + [cells.get((method, noise, arm), MISSING) for arm, _ in METHOD_TABLE_ARMS]
            for method in methods for noise in noises if any((method, noise, a) in cells for a, _ in METHOD_TABLE_ARMS)]
    write_table(out, "ssl_methods", "Linear probe top-1 (%) per SSL method (the paper's Table 2), last checkpoint",
                ["method", "noise"] + [title for _, title in METHOD_TABLE_ARMS], rows)
    return True


def interval_cell(block: dict, sign: str = "") -> str:
    """``mean [low, high]`` of a t interval block (the mean alone without bounds); ``sign="+"`` for differences."""
    number = f"{{:{sign}.1f}}".format
    if block.get("low") is None:
        return number(block["mean"])
    return f"{number(block['mean'])} [{number(block['low'])}, {number(block['high'])}]"


def write_few_shot_table(results: list[dict], out: Path) -> bool:
    """Rows (method, noise), columns k-NN / logistic regression per number of shots; the last checkpoint wins."""
    last = _last_of(results, "few_shot")
    if not last:
        return False
    shots = sorted({n for cells in last.values() for n in cells["shots"]}, key=int)
    header = ["method", "noise"] + [f"{n}-shot {p}" for n in shots for p in ("k-NN", "logreg")] + ["logreg, all"]
    keys = _method_ordered(last)
    rows = [list(key) + [interval_cell(last[key]["shots"][n][p]) if n in last[key]["shots"] else MISSING
                         for n in shots for p in ("knn", "logreg")]
            + [f"{last[key]['logreg_all']['top1']:.1f}" if "logreg_all" in last[key] else MISSING] for key in keys]
    write_table(out, "few_shot", "Few-shot top-1 (%): mean [95 % interval] over the draws; logistic regression on all "
                "labels", header, rows)
    return True


def _method_ordered(cells: dict[tuple[str, str], dict]) -> list[tuple[str, str]]:
    """The (method, noise) keys of ``cells``, methods in the paper's order, then by noise."""
    methods = _ordered({method for method, _ in cells}, METHOD_ORDER)
    return sorted(cells, key=lambda key: (methods.index(key[0]), key[1]))


def _last_of(results: list[dict], protocol: str) -> dict[tuple[str, str], dict]:
    """{(method, noise): results of the last checkpoint} of one protocol."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for result in results:
        if result["protocol"] == protocol:
            groups[(_label(result["method"]), _label(result["noise"]))].append(result)
    return {key: max(group, key=_sort_key)["results"] for key, group in groups.items()}


def write_robustness(results: list[dict], out: Path) -> Optional[Path]:
    """``robustness.{md,csv}`` and ``robustness_curve.png``; None without robustness results."""
    last = _last_of(results, "robustness")
    if not last:
        return None
    families = sorted({f for cells in last.values() for f in cells["areas"]["logreg"]})
    header = ["method", "noise", "clean"] + [f"area {f}" for f in families]
    keys = _method_ordered(last)
    pair = lambda a, b: f"{a:.1f} / {b:.1f}"  # noqa: E731
    rows = [list(key) + [pair(last[key]["clean"]["logreg"], last[key]["clean"]["knn"])]
            + [pair(last[key]["areas"]["logreg"][f], last[key]["areas"]["knn"][f]) if f in last[key]["areas"]["logreg"]
               else MISSING for f in families] for key in keys]
    write_table(out, "robustness", "Robustness: logistic regression / k-NN top-1 (%) on clean val images and the area "
                "of each noise family (mean top-1 over its PSNR span)", header, rows)
    figure, axes = pyplot().subplots(1, len(families), figsize=(4.5 * len(families), 3.6), squeeze=False)
    for axis, family in zip(axes[0], families):
        for key in keys:
            points = curves_by_family(last[key]["noises"], "logreg").get(family, [])
            axis.plot([x for x, _ in points], [y for _, y in points], marker="o", label=f"{key[0]} ({key[1]})")
        axis.set_title(f"noise: {family}")
        axis.set_xlabel("PSNR of the val images (dB)")
        axis.set_ylabel("logistic regression top-1 (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_png(figure, out / "robustness_curve.png")


def write_retrieval_table(results: list[dict], out: Path) -> bool:
    """Rows (method, noise, arm, checkpoint label), columns <dataset> E/M/H mAP; the newest result wins."""
    cells: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for result in sorted((r for r in results if r["protocol"] == "instance_recog"), key=lambda r: r["created"]):
        key = (_label(result["method"]), _label(result["noise"]), result["settings"].get("arm", "?"),
               result.get("checkpoint_label") or (f"epoch {result['epoch']}" if result["epoch"] is not None else "?"))
        cells[key][result["results"]["dataset"]] = result["results"]
    if not cells:
        return False
    datasets = _ordered({d for row in cells.values() for d in row}, ("roxford5k", "rparis6k"))
    header = ["method", "noise", "arm", "checkpoint"] + [f"{d} {p}" for d in datasets for p in ("E", "M", "H")]
    keys = sorted(cells, key=lambda k: (_ordered({k[0] for k in cells}, METHOD_ORDER).index(k[0]), k[1:]))
    rows = [list(key) + [cells[key][d][p]["mAP"] if d in cells[key] else MISSING
                         for d in datasets for p in ("easy", "medium", "hard")] for key in keys]
    write_table(out, "retrieval", "Retrieval mAP (%), revisited protocol, Easy / Medium / Hard", header, rows)
    return True


def _retrieval_cells(results: list[dict]) -> dict[tuple[str, str, str], dict]:
    """{(method, noise, dataset): results} of the newest retrieval result, preferring the ``final`` checkpoint."""
    cells: dict[tuple[str, str, str], dict] = {}
    ranked = sorted((r for r in results if r["protocol"] == "instance_recog"),
                    key=lambda r: (r.get("checkpoint_label") == "final", r["created"]))
    for result in ranked:
        cells[(_label(result["method"]), _label(result["noise"]), result["results"]["dataset"])] = result["results"]
    return cells


def write_summary(results: list[dict], out: Path) -> bool:
    """``summary.{md,csv}``: rows (noise, method); probe, k-NN and retrieval numbers side by side."""
    tables = linear_cells(results)
    retrieval = _retrieval_cells(results)
    keys = set().union(*(cells.keys() for cells in tables.values())) | {k[:2] for k in retrieval}
    if not keys:
        return False
    datasets = _ordered({k[2] for k in retrieval}, ("roxford5k", "rparis6k"))
    header = ["noise", "method", "linear top-1", "linear top-1 (best on val)", "k-NN top-1"]
    header += [f"{d} mAP {p}" for d in datasets for p in ("M", "H")]
    rows = []
    for noise in _ordered({n for _, n in keys}, ("identity",) + PAPER_NOISE_SETTINGS):
        for method in _ordered({m for m, n in keys if n == noise}, METHOD_ORDER):
            row: list[object] = [noise, method] + [tables.get(name, {}).get((method, noise), MISSING)
                                                   for name in ("linear_top1", "linear_top1_paper_best", "knn_top1")]
            for dataset in datasets:
                cell = retrieval.get((method, noise, dataset))
                row += [cell[p]["mAP"] if cell else MISSING for p in ("medium", "hard")]
            rows.append(row)
    write_table(out, "summary", "Summary: linear probe (last checkpoint), k-NN, retrieval (final checkpoint)",
                header, rows)
    return True


def plot_curves(results: list[dict], out: Path) -> list[Path]:
    """One PNG per noise setting: held-out-selected top-1 versus epoch, a line per method."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        if result["protocol"] == "linear" and result["epoch"] is not None:
            series[_label(result["noise"])][_label(result["method"])].append(
                (float(result["epoch"]), result["results"]["final"]["top1"]))
    written = []
    for noise, by_method in sorted(series.items()):
        figure, axis = pyplot().subplots(figsize=(6, 4))
        for method in _ordered(by_method, METHOD_ORDER):
            points = sorted(by_method[method])
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=method)
        axis.set_xlabel("epoch")
        axis.set_ylabel("linear probe top-1 (%)")
        axis.set_title(f"noise: {noise}")
        axis.grid(alpha=0.3)
        axis.legend()
        written.append(save_png(figure, out / f"linear_curve_{noise}.png"))
    return written


HEALTH = "training_health"


def write_training_health(runs: Iterable[Path], out: Path) -> Path:
    """``training_health.md`` (first and last values, the alarm's verdicts) and ``.png`` of training runs."""
    curves = {Path(run).name: read_curves(Path(run)) for run in runs}
    atomic_write_text(out / f"{HEALTH}.md", "## Training health\n\n" + curves_markdown(curves))
    return plot_training_curves(curves, out / f"{HEALTH}.png")


def build_report(roots: Iterable[Path], out: Path, skip_invalid: bool = False, page: Optional[str] = None,
                 psnr_json: Optional[Path] = None, includes: tuple[Path, ...] = (), allow_empty: bool = False,
                 runs: Iterable[Path] = ()) -> dict[str, list]:
    """Collect, tabulate and plot (and write the page when ``page`` is a title); returns what was written. No
    result file is an error, unless ``allow_empty`` (a page of runs that were not probed: its includes only).
    ``runs``: training run folders whose health is plotted."""
    roots = list(roots)
    results = collect_results([root for root in roots if not allow_empty or Path(root).exists()], skip_invalid)
    if not results and not (allow_empty and page):
        raise FileNotFoundError(f"no result file (schema dinov2-eval-result) under {', '.join(map(str, roots))}")
    make_folder(out)
    runs = list(runs)
    health_figures = [write_training_health(runs, out)] if runs else []
    health_tables = [HEALTH] if runs else []
    if not results:
        return {"results": [], "tables": health_tables, "figures": health_figures,
                "pages": list(write_page(out, page, health_tables, psnr_json, includes)) if page else []}
    tables = write_linear_tables(results, out) + health_tables
    if write_method_table(results, out):
        tables.append("ssl_methods")
    if write_few_shot_table(results, out):
        tables.append("few_shot")
    robustness_figure = write_robustness(results, out)
    if robustness_figure is not None:
        tables.append("robustness")
    if write_retrieval_table(results, out):
        tables.append("retrieval")
    if write_summary(results, out):
        tables.append("summary")
    figures = plot_curves(results, out) + health_figures + ([robustness_figure] if robustness_figure else [])
    pages = list(write_page(out, page, tables, psnr_json, includes)) if page else []
    return {"results": [r["_path"] for r in results], "tables": tables, "figures": figures, "pages": pages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+", help="folders searched recursively for result JSON files")
    add_output_dir(parser, "tables, figures and the page (default: %(default)s)", "--out", required=False,
                   default=Path("outputs/report"))
    parser.add_argument("--skip-invalid", action="store_true", help="warn about invalid result files, do not stop")
    parser.add_argument("--page", metavar="TITLE", help="also write OUT/index.md and OUT/index.html with this title")
    parser.add_argument("--n2n-psnr", type=Path, help="with --page: Neighbor2Neighbor/evaluate_psnr.py result JSON")
    parser.add_argument("--include", type=Path, nargs="+", default=[], help="with --page: extra .md / .png files")
    parser.add_argument("--runs", type=Path, nargs="+", default=[],
                        help="training run folders whose health curves and alarm verdicts are shown")
    parser.add_argument("--allow-empty", action="store_true",
                        help="with --page: write the page of its includes when no result file is found (runs "
                             "without probes)")
    args = parser.parse_args(argv)
    if (args.n2n_psnr or args.include) and not args.page:
        parser.error("--n2n-psnr and --include need --page")
    try:
        check_page_inputs(args.n2n_psnr, tuple(args.include))
        written = build_report(args.roots, args.output_dir, args.skip_invalid, args.page, args.n2n_psnr,
                               tuple(args.include), args.allow_empty, args.runs)
    except (OSError, ResultError, ValueError, KeyError) as error:  # bad results; an unwritable or full output folder
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(written['results'])} result files -> {args.output_dir}: tables {', '.join(written['tables'])}; "
          f"{len(written['figures'])} figure(s)" + (f"; page {written['pages'][1]}" if written["pages"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
