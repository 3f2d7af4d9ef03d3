"""A screenshot of the service's page answering one photo (the README's picture).

    python bench/page_screenshot.py --url http://127.0.0.1:8000 --photo PHOTO.jpg --out docs/page.png
                                    [--strategy top1] [--k 5]

Drives Debian's headless chromium with Playwright (never ``playwright install``) against a running
``serve.py``: uploads the photo, waits for the answer, saves a full-page PNG.
"""

from __future__ import annotations

import argparse

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 120_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--strategy", default=None)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--width", type=int, default=1200)
    args = ap.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(args.url)
        page.wait_for_function("document.querySelector('#strategy').options.length > 0", timeout=TIMEOUT_MS)
        if args.strategy:
            page.select_option("#strategy", args.strategy)
        page.fill("#k", str(args.k))
        page.set_input_files("#file-input", args.photo)
        page.wait_for_selector("body[data-state=done]", timeout=TIMEOUT_MS)
        page.wait_for_function(
            "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=TIMEOUT_MS,
        )
        page.screenshot(path=args.out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
