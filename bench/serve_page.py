"""The README's screenshot of the web page: real recommendations with their explanations.

    python bench/serve_page.py --model-uri ~/sidrec-artifacts/beauty/recommender/RUN/bundle \\
        --search "opi nail" --pick 0 2 --k 5 --out docs/figures/serve_page.png

Starts a local Ray + Serve in this process, deploys `serve_apps/recommender.py`
(one replica, bearer-token auth on, a random token), opens the page at `/` in
headless Chromium (sidrec.serving.browser, the DevTools protocol), types the
token, searches the catalog, clicks "add" on the picked results, asks for the
top-k and saves a PNG of the whole page. It prints the rendered list and the
seconds each step took.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # serve_apps/


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-uri", required=True, help="models:/NAME@ALIAS or a bundle folder")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--search", default="opi nail", help="what to type into the search box")
    parser.add_argument("--pick", type=int, nargs="+", default=[0, 2], help="results to add")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "serve_page.png")
    args = parser.parse_args()

    import ray
    from ray import serve
    from serve_apps.recommender import AppArgs, build_app

    from sidrec.serving.browser import Browser

    token = secrets.token_urlsafe(16)
    os.environ["SIDREC_PAGE_TOKEN"] = token
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    model_uri = (
        str(Path(args.model_uri).expanduser()) if "://" not in args.model_uri else args.model_uri
    )
    app = build_app(
        AppArgs(
            model_uri=model_uri,
            tracking_uri=args.tracking_uri,
            auth_token_env="SIDREC_PAGE_TOKEN",
            runtime_env={"env_vars": {"SIDREC_PAGE_TOKEN": token}},
        )
    )
    start = time.perf_counter()
    serve.run(app, name="page", route_prefix="/")
    print(f"deployed in {time.perf_counter() - start:.1f} s")
    try:
        with Browser(width=1400, height=900) as page:
            step = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.type("#token", token)
            page.type("#q", args.search)
            page.click("#search-btn")
            page.wait_for("document.querySelectorAll('#results li').length > 0")
            for i in args.pick:
                page.click("#results li button.add", index=i)
            page.type("#k", str(args.k))
            page.click("#recommend-btn")
            page.wait_for("document.getElementById('recs').dataset.state === 'done'")
            print(f"page driven in {time.perf_counter() - step:.1f} s")
            print(page.eval("document.getElementById('answered-by').textContent"))
            for line in page.eval(
                "[...document.querySelectorAll('#recs > li')].map(li => li.innerText)"
            ):
                print("-", line.replace("\n", " | "))
            page.screenshot(args.out)
            print(f"wrote {args.out}")
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
