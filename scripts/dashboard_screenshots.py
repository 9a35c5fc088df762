"""Full-page screenshots of dashboard sites in headless Chromium (for docs/dashboards/).

For each site: the index page, and the latent pages of the given latents (default: the
shown latent with the most firings and the one closest to the median frequency). Waits for
each page's ready flag (body[data-ready]) before the shot.

    python scripts/dashboard_screenshots.py docs/dashboards/encoder-K16384 \
        --out docs/dashboards/screenshots --prefix encoder-K16384
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def shown_latents(site: Path) -> tuple[list[int], list[float]]:
    text = (site / "data" / "index.js").read_text()
    rows = json.loads(text[text.index("(") + 1 : text.rindex(")")])["rows"]
    return rows["id"], rows["freq"]


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("site", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--latents", type=int, nargs="*", default=None)
    p.add_argument("--width", type=int, default=1300)
    a = p.parse_args()
    a.site = a.site.resolve()
    ids, freq = shown_latents(a.site)
    if a.latents is None:
        by_freq = sorted(zip(freq, ids, strict=True))
        a.latents = [by_freq[-1][1], by_freq[len(by_freq) // 2][1]]
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={a.width},1000"):  # fmt: skip
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        pages = [("index", (a.site / "index.html").as_uri(), "index")]
        pages += [(f"latent-{j}", (a.site / "latent.html").as_uri() + f"#{j}", str(j))
                  for j in a.latents]  # fmt: skip
        for name, url, ready in pages:
            d.get(url)
            WebDriverWait(d, 30).until(
                lambda d, r=ready: d.execute_script("return document.body.dataset.ready") == r
            )
            h = d.execute_script("return document.body.scrollHeight")
            d.set_window_size(a.width, min(max(h + 80, 600), 5000))
            path = a.out / f"{a.prefix}-{name}.png"
            d.save_screenshot(str(path))
            d.set_window_size(a.width, 1000)
            print(path)
    finally:
        d.quit()


if __name__ == "__main__":
    main()
