"""One page that shows a report folder's tables and figures together: ``index.md`` and ``index.html``.

Used by ``exps/report.py --page TITLE``. The page lists, in order: the summary table, the denoiser's PSNR (when a
``Neighbor2Neighbor/evaluate_psnr.py`` JSON is given), every other table of the folder, extra Markdown files,
and every PNG figure. Figures given from elsewhere are copied into the folder, so it is self-contained.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from utils.atomic import atomic_write_text

FIGURE_CAPTIONS = {
    "noise_grid": "The noise settings on val digits (PSNR under each panel).",
    "denoising_examples": "Neighbor2Neighbor on val digits: clean, noisy, denoised (PSNR under each panel).",
    "probe_accuracy": "Toy MLP experiment: linear-probe accuracy per arm and repetition.",
    "robustness_curve": "Robustness: logistic-regression top-1 against the PSNR of the noised val images, a panel "
                        "per noise family.",
    "training_health": "Training health per run, against the iteration: loss, DINO target entropy (ln(prototypes): "
                       "uniform targets), effective rank of the class tokens (1: collapsed) and online k-NN top-1.",
}
TABLE_ORDER = ("summary", "linear_top1", "linear_top1_paper_best", "knn_top1", "retrieval", "training_health")


def psnr_markdown(path: Path) -> str:
    """The denoiser's quality from an ``evaluate_psnr.py`` result: noisy, best Gaussian blur, denoised."""
    data = json.loads(Path(path).read_text())
    try:
        rows = [("noisy", data["noisy_psnr"]), (f"best Gaussian blur (sigma {data['best_blur_sigma']})",
                                                 data["best_blur_psnr"]), ("Neighbor2Neighbor", data["denoised_psnr"])]
    except KeyError as error:
        raise ValueError(f"{path} is not an evaluate_psnr.py result: no key {error}") from None
    lines = [f"## Denoiser: mean PSNR on {data.get('images', '?')} val images (dB)", "", "| images | PSNR |",
             "| --- | --- |"]
    return "\n".join(lines + [f"| {name} | {value:.2f} |" for name, value in rows]) + "\n"


def check_page_inputs(psnr_json: Path | None, includes: tuple[Path, ...]) -> None:
    """Raise ``FileNotFoundError`` / ``ValueError`` naming a missing or unsupported page input, before any work."""
    for path in ([psnr_json] if psnr_json is not None else []) + [Path(p) for p in includes]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file (given to --n2n-psnr / --include)")
    for path in includes:
        if Path(path).suffix.lower() not in (".md", ".png"):
            raise ValueError(f"--include {path}: only .md and .png files can be included")


def _caption(path: Path) -> str:
    stem = path.stem
    if stem.startswith("linear_curve_"):
        return f"Linear-probe top-1 versus pre-training epoch, noise {stem[len('linear_curve_'):]}."
    return FIGURE_CAPTIONS.get(stem, stem.replace("_", " "))


def build_page_markdown(out: Path, title: str, tables: list[str], psnr_json: Path | None = None,
                        includes: tuple[Path, ...] = ()) -> str:
    """The page as Markdown; PNG files among ``includes`` are copied into ``out``."""
    sections = [f"# {title}"]
    ordered = [t for t in TABLE_ORDER if t in tables] + [t for t in tables if t not in TABLE_ORDER]
    if "summary" in ordered:
        sections.append((out / "summary.md").read_text())
        ordered.remove("summary")
    if psnr_json is not None:
        sections.append(psnr_markdown(psnr_json))
    sections += [(out / f"{name}.md").read_text() for name in ordered]
    check_page_inputs(psnr_json, includes)
    for path in map(Path, includes):
        if path.suffix.lower() == ".png":
            if path.resolve() != (out / path.name).resolve():
                shutil.copyfile(path, out / path.name)
        else:
            text = path.read_text()
            sections.append(text if text.lstrip().startswith("#") else f"## {path.parent.name}\n\n{text}")
    sections.append("## Figures\n")
    for figure in sorted(out.glob("*.png"), key=lambda p: (list(FIGURE_CAPTIONS).index(p.stem)
                                                            if p.stem in FIGURE_CAPTIONS else len(FIGURE_CAPTIONS),
                                                            p.name)):
        sections.append(f"![{figure.stem}]({figure.name})\n\n*{_caption(figure)}*\n")
    return "\n".join(section.rstrip("\n") + "\n" for section in sections)


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_to_html(markdown: str, title: str) -> str:
    """The small Markdown subset the page uses (headings, pipe tables, images, paragraphs) as standalone HTML."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        if table:
            header, rows = table[0], [r for r in table[1:] if not all(set(c) <= {"-", " "} for c in r)]
            body.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr>")
            body.extend("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append("</table>")
            table.clear()

    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            table.append([cell.strip() for cell in stripped.strip("|").split("|")])
            continue
        flush_table()
        image = re.fullmatch(r"!\[(.*)\]\((.+)\)", stripped)
        heading = re.match(r"(#+) (.*)", stripped)
        if image:
            body.append(f'<p><img src="{html.escape(image.group(2))}" alt="{html.escape(image.group(1))}"></p>')
        elif heading:
            level = min(len(heading.group(1)), 6)
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped:
            body.append(f"<p>{_inline(stripped)}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_page(out: Path, title: str, tables: list[str], psnr_json: Path | None = None,
               includes: tuple[Path, ...] = ()) -> tuple[Path, Path]:
    """Write ``out/index.md`` and ``out/index.html``; returns both paths."""
    markdown = build_page_markdown(out, title, tables, psnr_json, includes)
    atomic_write_text(out / "index.md", markdown)
    atomic_write_text(out / "index.html", markdown_to_html(markdown, title))
    return out / "index.md", out / "index.html"
