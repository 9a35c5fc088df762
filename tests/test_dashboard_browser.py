"""The dashboard rendered by headless Chromium (Debian's `chromium` + `chromium-driver`, driven
by Selenium): the pages draw from file://, and the numbers on them are the data's.

Chromium is a requirement of the suite (scripts/setup.sh installs it): without it these tests
fail with the command that installs it; they never skip. Set DASHBOARD_SCREENSHOTS=<dir> to
keep screenshots of the pages.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from dashboard_fixtures import make_harvest, make_run  # noqa: E402

from implicit_em.dashboard import DashboardOptions, run  # noqa: E402

INSTALL = "apt-get install -y chromium chromium-driver (scripts/setup.sh does it)"


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(f"headless Chromium is needed for the dashboard test and is missing: {INSTALL}")
    return browser, driver


@pytest.fixture(scope="module")
def driver():
    browser, drv = chromium_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is needed for the dashboard test: pip install -e '.[dev]'")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1000"):  # fmt: skip
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=Service(drv))
    yield d
    d.quit()


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    acts, tok, lm = make_harvest(root)
    out = {}
    for family in ("encoder", "topk_sae"):
        run_dir = make_run(root, acts, family)
        site = root / f"site-{family}"
        run(DashboardOptions(run_dir=str(run_dir), out=str(site), progress=False, top_k=5,
                             n_samples=16, context=3, block_size=4),
            tokenizer=tok, W_U=lm.get_output_embeddings().weight.detach())  # fmt: skip
        text = (site / "data" / "index.js").read_text()
        out[family] = (site, json.loads(text[text.index("(") + 1 : text.rindex(")")]))
    return out


def wait_ready(d, value: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == value
    )


def shot(d, name: str) -> None:
    where = os.environ.get("DASHBOARD_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        h = d.execute_script("return document.body.scrollHeight")
        d.set_window_size(1300, min(max(h + 80, 600), 4000))
        d.save_screenshot(str(Path(where) / f"{name}.png"))
        d.set_window_size(1300, 1000)


def cells(d, col: int) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.find_elements(By.TAG_NAME, "td")[col].text
            for r in d.find_elements(By.CSS_SELECTOR, "#latents tbody tr")]  # fmt: skip


@pytest.mark.parametrize("family", ["encoder", "topk_sae"])
def test_index_page_renders_sorts_and_searches(driver, sites, family: str) -> None:
    from selenium.webdriver.common.by import By

    site, data = sites[family]
    rows = data["rows"]
    driver.get((site / "index.html").as_uri())
    wait_ready(driver, "index")
    assert driver.find_elements(By.CSS_SELECTOR, ".error") == []
    ids = [int(t[1:]) for t in cells(driver, 0)]
    by_freq = sorted(range(12), key=lambda i: (-rows["freq"][i], i))
    assert ids == [rows["id"][i] for i in by_freq]  # default: most frequent first
    shown = cells(driver, 1)[0]
    assert shown.endswith("%")
    assert float(shown[:-1]) == pytest.approx(100 * rows["freq"][by_freq[0]], rel=5e-3)
    assert "12 of 12 latents" in driver.find_element(By.ID, "match-count").text
    headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#latents th")]
    assert ("usage E[r]" in " ".join(headers)) == (family == "encoder")

    driver.find_element(By.CSS_SELECTOR, "th[data-key=max]").click()
    got_max = [float(t) for t in cells(driver, 2)]
    assert got_max == sorted(got_max, reverse=True)
    assert got_max[0] == pytest.approx(max(rows["max"]), rel=1e-2)
    if family == "encoder":
        driver.find_element(By.CSS_SELECTOR, "th[data-key=usage]").click()
        usage = [float(t) for t in cells(driver, 4)]
        assert usage == sorted(usage, reverse=True)
        assert usage[0] == pytest.approx(max(rows["usage"]), rel=1e-2)

    word = rows["tokens"][0].split()[0]
    want = sum(word in t.lower() for t in (s.lower() for s in rows["tokens"]))
    box = driver.find_element(By.ID, "search")
    box.send_keys(word)
    assert len(cells(driver, 0)) == want
    assert f"{want} of 12 latents" in driver.find_element(By.ID, "match-count").text
    box.clear()
    box.send_keys("#7")
    assert cells(driver, 0) == ["#7"]
    box.clear()
    bars = driver.find_elements(By.CSS_SELECTOR, "#density rect.bar")
    assert len(bars) == sum(c > 0 for c in data["density"]["counts"])
    tables = driver.find_elements(By.CSS_SELECTOR, "table.summary")
    assert {t.get_attribute("data-section") for t in tables} >= {"model", "config", "activations"}
    shot(driver, f"{family}-index")


@pytest.mark.parametrize("family", ["encoder", "topk_sae"])
def test_latent_page_shows_the_latent(driver, sites, family: str) -> None:
    from selenium.webdriver.common.by import By

    site, data = sites[family]
    rows = data["rows"]
    j = max(range(12), key=lambda i: rows["freq"][i])  # a latent that fires
    driver.get((site / "latent.html").as_uri() + f"#{j}")
    wait_ready(driver, str(j))
    assert driver.find_element(By.TAG_NAME, "h1").text == f"Latent #{j}"
    assert driver.find_element(By.ID, "max").text.startswith(f"{rows['max'][j]:.4g}"[:4])
    fires = round(rows["freq"][j] * data["meta"]["n_tokens"])
    assert (
        f"({fires} of {data['meta']['n_tokens']} tokens)" in driver.find_element(By.ID, "freq").text
    )
    top = driver.find_elements(By.CSS_SELECTOR, "#top .example")
    assert len(top) == 5
    vals = [float(e.find_element(By.CSS_SELECTOR, ".act").text) for e in top]
    assert vals == sorted(vals, reverse=True) and vals[0] == pytest.approx(rows["max"][j], rel=1e-3)
    centre = top[0].find_element(By.CSS_SELECTOR, ".tok.centre")
    assert "a = " in centre.get_attribute("title")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#quantiles .quantile")) == 5
    assert driver.find_elements(By.CSS_SELECTOR, "#histogram rect.bar")
    near = driver.find_elements(By.CSS_SELECTOR, "#near-encoder tr")
    assert len(near) == 8
    if family == "encoder":
        assert "r = " in centre.get_attribute("title")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#top .resp")) == 5
        usage = float(driver.find_element(By.ID, "usage").text.split()[0])
        assert usage == pytest.approx(rows["usage"][j], rel=1e-3)
        assert driver.find_elements(By.ID, "logits") == []
    else:
        assert driver.find_elements(By.CSS_SELECTOR, "#top .resp") == []
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.logits.pos tr")) == 10
        assert len(driver.find_elements(By.CSS_SELECTOR, "#near-decoder tr")) == 8
    shot(driver, f"{family}-latent")
    # follow a neighbour link: the page redraws from another block without reloading
    link = driver.find_element(By.CSS_SELECTOR, "#near-encoder a")
    k = int(link.text[1:])
    link.click()
    wait_ready(driver, str(k))
    assert driver.find_element(By.TAG_NAME, "h1").text == f"Latent #{k}"
    assert torch.tensor(rows["block"])[k] == k // 4
